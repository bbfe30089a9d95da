"""Forest fire dashboard (FWI codes, QX/T 77 levels, detections, zone coverage against the plan)."""
from dashboards.panels import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries
from dashboards.targets import Target, target
from schemas.thresholds import load_plan, today

TARGETS = (  # the plan targets this domain's indicators are judged against (the wall's tiles)
    Target("plan.fire.zones_covered", "fire", "zones_covered", "Forest zones with a danger level today",
           "林区火险等级覆盖率", "%"),
    Target("plan.forest.coverage", "fire", "", "Forest cover", "森林覆盖率", "%",
           not_measured="from the forestry survey, not from sensors", not_measured_zh="来自森林资源调查,非传感器监测"),
)

LEVEL_COLOURS = ["green", "blue", "yellow", "orange", "red"]  # QX/T 77-2007 levels 1..5
LEVEL_NAMES = {"1": "1 低", "2": "2 较低", "3": "3 较高", "4": "4 高", "5": "5 极高"}


def level_steps() -> list[tuple[float | None, str]]:
    return [(None, LEVEL_COLOURS[0])] + [(float(level), c) for level, c in zip(range(2, 6), LEVEL_COLOURS[1:])]


def fwi_steps() -> list[tuple[float | None, str]]:
    """FWI colour steps at the operator's cut points (plan file fire.fwi_level_cuts)."""
    cuts = load_plan().get("fire.fwi_level_cuts", today()).array()
    return [(None, LEVEL_COLOURS[0])] + [(float(v), c) for v, c in zip(cuts, LEVEL_COLOURS[1:])]


def dashboard() -> Dashboard:
    coverage = target("plan.fire.zones_covered")
    return Dashboard("laoshan-fire", "森林防火 Forest fire danger", [
        stat("今日火险等级 Today's fire danger by zone", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "fire_daily" and r._field == "level" and {SITE_FILTER})
  |> last() |> keep(columns: ["site", "_value"])''', ("site", "_value"), thresholds=level_steps(), width=16, height=6,
             mappings=LEVEL_NAMES, description="QX/T 77-2007 level from the daily FWI per forest zone; plan l.202"),
        stat(f"林区覆盖 Zones with a level (of the registered zones) vs {coverage.value():.0%}", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "fire" and r.indicator == "zones_covered" and r._field == "value")
  |> last() |> keep(columns: ["_value"])''', ("_value",), unit="percentunit", thresholds=coverage.steps(), width=8,
             height=6, description="zones that should report (site registry) with a danger level today; a silent zone lowers it"),
        table("火险天气指数 Fire-weather codes per zone (Van Wagner 1987)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "fire_daily" and {SITE_FILTER})
  |> pivot(rowKey: ["_time", "site"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> sort(columns: ["_time"], desc: true)
  |> keep(columns: ["_time", "site", "ffmc", "dmc", "dc", "isi", "bui", "fwi", "level"])''',
              ("_time", "site", "ffmc", "dmc", "dc", "isi", "bui", "fwi", "level"), width=24, height=8,
              thresholds=level_steps()),
        timeseries("FWI 火险指数 per zone", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "fire_daily" and r._field == "fwi" and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "site"])''', ("_time", "_value", "site"), width=12, height=8,
                   thresholds=fwi_steps(), threshold_style="area"),
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
