"""Air quality dashboard (HJ 633 AQI colours, GB 3095 daily means) and the wall's PM2.5 tile."""
from dashboards.builder import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries

# HJ 633-2012 category colours
AQI_COLOURS = [(None, "#00E400"), (51, "#FFFF00"), (101, "#FF7E00"), (151, "#FF0000"), (201, "#99004C"), (301, "#7E0023")]
PM25_TARGET = [(None, "green"), (33.5, "yellow"), (35, "red")]  # plan l.267: 35 binding, 33.5 stretch


def wall_tile():
    return stat("PM2.5 年均值(至今) PM2.5 year to date vs 35 / 33.5", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "air" and r.indicator == "pm25_ytd" and r.scope == "district")
  |> filter(fn: (r) => r._field == "value" or r._field == "projection")
  |> last() |> keep(columns: ["_time", "_field", "_value"])''', ("_field", "_value"),
                unit="conc:ugm3", decimals=1, thresholds=PM25_TARGET, width=5, height=7,
                description="Year-to-date mean of valid daily means and the run-rate projection; target 35 µg/m³ (binding), 33.5 (stretch), plan l.267")


def dashboard() -> Dashboard:
    return Dashboard("laoshan-air", "空气质量 Air quality", [
        stat("PM2.5 年均值 YTD (district)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "air" and r.indicator == "pm25_ytd")
  |> filter(fn: (r) => r._field == "value") |> last() |> keep(columns: ["scope", "_value"])''', ("scope", "_value"),
             unit="conc:ugm3", decimals=1, thresholds=PM25_TARGET, width=24, height=5),
        timeseries("小时AQI Hourly AQI (HJ 633 colours)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "air_hourly" and r._field == "aqi" and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "site"])''', ("_time", "_value", "site"),
                   thresholds=AQI_COLOURS, width=12, field_config={"custom": {"thresholdsStyle": {"mode": "area"}}}),
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
