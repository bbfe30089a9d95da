"""Nearshore sea-water dashboard (GB 3097 class bands, green tide) and the wall's class I-II tile."""
from dashboards.builder import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries

CLASS_COLOURS = [(None, "#1F78C1"), (2, "#73BF69"), (3, "#FADE2A"), (4, "#FF9830"), (5, "#F2495C")]
CLASS_NAMES = {"1": "I 类", "2": "II 类", "3": "III 类", "4": "IV 类", "5": "劣四类"}


def wall_tile():
    return stat("近岸海域优良率 Sea water class I-II share vs 100%", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "seawater" and r.indicator == "good_share" and r._field == "value")
  |> last() |> keep(columns: ["_time", "_value"])''', ("_value",), unit="percentunit", decimals=0,
                thresholds=[(None, "red"), (0.9, "orange"), (1.0, "green")], width=5, height=7,
                description="Share of nearshore sites in GB 3097-1997 class I or II; plan l.261 target 100%")


def dashboard() -> Dashboard:
    mapping = [{"type": "value", "options": {k: {"text": v} for k, v in CLASS_NAMES.items()}}]
    return Dashboard("laoshan-seawater", "近岸海域水质 Nearshore sea water", [
        table("每日水质类别 Daily class per buoy (GB 3097-1997, worst factor)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "seawater_daily" and {SITE_FILTER})
  |> filter(fn: (r) => r._field == "water_class" or r._field == "green_tide" or r._field == "inorganic_nitrogen" or r._field == "phosphate" or r._field == "dissolved_oxygen")
  |> pivot(rowKey: ["_time", "site"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> sort(columns: ["_time"], desc: true)''', ("_time", "site", "water_class", "green_tide"),
              width=12, height=9, thresholds=CLASS_COLOURS,
              overrides=[{"matcher": {"id": "byName", "options": "water_class"},
                          "properties": [{"id": "mappings", "value": mapping},
                                         {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}]),
        timeseries("无机氮与活性磷酸盐 Inorganic N and phosphate (mg/L)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "seawater_daily" and (r._field == "inorganic_nitrogen" or r._field == "phosphate") and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "_field", "site"])''', ("_time", "_value", "_field", "site"), width=12, height=9,
                   thresholds=[(None, "green"), (0.3, "yellow"), (0.4, "orange"), (0.5, "red")],
                   field_config={"custom": {"thresholdsStyle": {"mode": "line"}}}),
        timeseries("浒苔预警 Green tide: chlorophyll-a (µg/L) and turbidity (NTU)", f'''
from(bucket: "telemetry") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "seawater" and (r._field == "chlorophyll_a" or r._field == "turbidity") and {SITE_FILTER})
  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
  |> keep(columns: ["_time", "_value", "_field", "site"])''', ("_time", "_value", "_field", "site"), width=16, height=8),
        stat("优良率 Class I-II share", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "seawater" and r.indicator == "good_share" and r._field == "value")
  |> keep(columns: ["_time", "_value"])''', ("_time", "_value"), unit="percentunit", width=8, height=8,
             thresholds=[(None, "red"), (1.0, "green")]),
    ], tags=["seawater"], variables=[site_variable("seawater_daily")])
