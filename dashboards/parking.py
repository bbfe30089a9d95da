"""Parking dashboard (occupancy bands, networked lots, spaces added) and the wall's parking tile."""
from dashboards.builder import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries

OCCUPANCY = [(None, "green"), (0.85, "yellow"), (0.9, "red")]  # Shoup ~85%, saturated above 90%


def wall_tile():
    return stat("停车联网率与占用 Networked lots vs 100% / occupancy", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "parking" and r._field == "value")
  |> filter(fn: (r) => r.indicator == "networked_rate" or r.indicator == "occupancy")
  |> last() |> keep(columns: ["_time", "indicator", "_value"])''', ("indicator", "_value"), unit="percentunit",
                decimals=0, thresholds=[(None, "red"), (0.95, "green")], width=5, height=7,
                description="Share of registered commercial lots reporting (plan l.192 target 100%) and district occupancy")


def dashboard() -> Dashboard:
    return Dashboard("laoshan-parking", "停车泊位 Parking", [
        stat("联网率 Networked rate", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "parking" and r.indicator == "networked_rate" and r._field == "value")
  |> last() |> keep(columns: ["_value"])''', ("_value",), unit="percentunit", width=8, height=5,
             thresholds=[(None, "red"), (1.0, "green")]),
        stat("新增公共泊位 Public spaces added vs 20,000", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "parking" and r.indicator == "spaces_added" and r._field == "value")
  |> last() |> keep(columns: ["_value"])''', ("_value",), width=8, height=5,
             thresholds=[(None, "orange"), (20000, "green")]),
        stat("全区占用率 District occupancy", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "parking" and r.indicator == "occupancy" and r._field == "value")
  |> last() |> keep(columns: ["_value"])''', ("_value",), unit="percentunit", width=8, height=5, thresholds=OCCUPANCY),
        timeseries("小时占用率 Hourly occupancy per lot", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "parking_hourly" and r._field == "occupancy" and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "site"])''', ("_time", "_value", "site"), unit="percentunit", width=16, height=9,
                   thresholds=OCCUPANCY, field_config={"custom": {"thresholdsStyle": {"mode": "line"}}, "max": 1, "min": 0}),
        table("停车场 Lots: latest hour", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "parking_hourly" and {SITE_FILTER})
  |> last() |> pivot(rowKey: ["_time", "site"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> keep(columns: ["site", "occupancy", "occupancy_max", "capacity", "saturated", "reports"])''',
              ("site", "occupancy", "capacity", "saturated"), width=8, height=9),
    ], tags=["parking"], variables=[site_variable("parking_hourly")])
