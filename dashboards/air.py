"""Air quality dashboard (HJ 633 AQI colours, GB 3095 daily means, PM2.5 against the plan)."""
from dashboards.panels import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries
from dashboards.targets import Target, outlook_table, target
from schemas.thresholds import load_plan, today

TARGETS = (  # the plan targets this domain's indicators are judged against (the wall's tiles)
    Target("plan.air.pm25_annual", "air", "pm25_ytd", "PM2.5 annual mean (year to date)", "PM2.5 年均值(年初至今)",
           "µg/m³", lower_is_better=True, outlook=True),
)

# HJ 633-2012 category colours, one per IAQI band (优 良 轻度 中度 重度 严重)
AQI_COLOURS = ["#00E400", "#FFFF00", "#FF7E00", "#FF0000", "#99004C", "#7E0023"]


def aqi_steps() -> list[tuple[float | None, str]]:
    """AQI colour steps from the plan file's HJ 633 IAQI breakpoints: a band starts one above its
    lower breakpoint (AQI is an integer, rounded up)."""
    levels = load_plan().get("hj633.iaqi", today()).array()[1:6]
    return [(None, AQI_COLOURS[0])] + [(float(v) + 1, c) for v, c in zip(levels, AQI_COLOURS[1:])]


def dashboard() -> Dashboard:
    pm25 = target("plan.air.pm25_annual")
    return Dashboard("laoshan-air", "空气质量 Air quality", [
        stat(f"PM2.5 年均值 YTD vs {pm25.value():g} (stretch "
             f"{load_plan().value('plan.air.pm25_annual_stretch', today()):g}) µg/m³", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "air" and r.indicator == "pm25_ytd")
  |> filter(fn: (r) => r._field == "value") |> last() |> keep(columns: ["scope", "_value"])''', ("scope", "_value"),
             unit="conc:ugm3", decimals=1, thresholds=pm25.steps(), width=24, height=5),
        outlook_table("air", height=4),
        timeseries("小时AQI Hourly AQI (HJ 633 colours)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "air_hourly" and r._field == "aqi" and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "site"])''', ("_time", "_value", "site"),
                   thresholds=aqi_steps(), width=12, threshold_style="area"),
        timeseries("PM2.5 小时均值 Hourly mean (µg/m³)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "air_hourly" and r._field == "pm25" and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "site"])''', ("_time", "_value", "site"), unit="conc:ugm3", width=12),
        table("日均值 Daily means (GB 3095, >= 20 valid hours)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "air_daily" and {SITE_FILTER})
  |> pivot(rowKey: ["_time", "site"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> sort(columns: ["_time"], desc: true)
  |> keep(columns: ["_time", "site", "pm25", "pm10", "no2", "so2", "co", "o3_8h_max", "valid_hours", "pm25_limit"])''',
              ("_time", "site", "pm25", "o3_8h_max", "valid_hours"), width=12, height=9),
        timeseries("传感器原始值 Raw PM2.5 per sensor", f'''
from(bucket: "telemetry") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "air" and r._field == "pm25" and {SITE_FILTER})
  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
  |> keep(columns: ["_time", "_value", "sensor"])''', ("_time", "_value", "sensor"), unit="conc:ugm3", width=12, height=9),
    ], tags=["air"], variables=[site_variable("air_hourly")])
