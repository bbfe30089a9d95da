"""Forest fire dashboard (FWI codes, QX/T 77 levels, detections) and the wall's fire-danger tile."""
from dashboards.builder import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries

LEVEL_COLOURS = [(None, "green"), (2, "blue"), (3, "yellow"), (4, "orange"), (5, "red")]  # QX/T 77-2007
LEVEL_NAMES = {"1": "1 低", "2": "2 较低", "3": "3 较高", "4": "4 高", "5": "5 极高"}


def wall_tile():
    return stat("今日火险等级 Today's fire danger by zone", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "fire_daily" and r._field == "level")
  |> last() |> keep(columns: ["site", "_value"])''', ("site", "_value"), thresholds=LEVEL_COLOURS, width=5, height=7,
                field_config={"mappings": [{"type": "value", "options": {k: {"text": v} for k, v in LEVEL_NAMES.items()}}]},
                description="QX/T 77-2007 level from the daily FWI per forest zone; plan l.202")


def dashboard() -> Dashboard:
    return Dashboard("laoshan-fire", "森林防火 Forest fire danger", [
        table("火险天气指数 Fire-weather codes per zone (Van Wagner 1987)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "fire_daily" and {SITE_FILTER})
  |> pivot(rowKey: ["_time", "site"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> sort(columns: ["_time"], desc: true)
  |> keep(columns: ["_time", "site", "ffmc", "dmc", "dc", "isi", "bui", "fwi", "level"])''',
              ("_time", "site", "ffmc", "dmc", "dc", "isi", "bui", "fwi", "level"), width=24, height=8,
              thresholds=LEVEL_COLOURS),
        timeseries("FWI 火险指数 per zone", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "fire_daily" and r._field == "fwi" and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "site"])''', ("_time", "_value", "site"), width=12, height=8,
                   thresholds=[(None, "green"), (5, "blue"), (10, "yellow"), (20, "orange"), (30, "red")],
                   field_config={"custom": {"thresholdsStyle": {"mode": "area"}}}),
        timeseries("烟火识别 Smoke / flame detections (max per window)", f'''
from(bucket: "telemetry") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "fire" and (r._field == "smoke" or r._field == "flame") and {SITE_FILTER})
  |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)
  |> keep(columns: ["_time", "_value", "_field", "site"])''', ("_time", "_value", "_field", "site"), width=12, height=8),
        timeseries("午间观测 Noon humidity (%) and wind (km/h)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "fire_daily" and (r._field == "noon_humidity" or r._field == "noon_wind") and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "_field", "site"])''', ("_time", "_value", "_field", "site"), width=24, height=7),
    ], tags=["fire"], variables=[site_variable("fire_daily")])
