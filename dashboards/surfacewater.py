"""Surface and drinking water dashboard (GB 3838 class per site and day against its designated class,
nutrients, the plan's l.269 indicators) and the wall's reservoir / district-sections tile."""
from dashboards.panels import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries
from dashboards.targets import Target, target

TARGETS = (  # plan l.269, judged against this domain's indicators (the wall's tiles)
    Target("plan.surfacewater.reservoir_at_designated", "surfacewater", "reservoir_at_designated",
           "Laoshan reservoir at its designated class", "崂山水库水质达标", "%"),
    Target("plan.surfacewater.sections_up_to_standard", "surfacewater", "sections_up_to_standard",
           "District river sections up to standard", "区控断面达标率", "%"),
    Target("plan.surfacewater.worse_than_v", "surfacewater", "worse_than_v", "Water bodies worse than class V",
           "劣Ⅴ类水体", "bodies", lower_is_better=True, strict=False, decimals=0),
)

CLASS_COLOURS = [(None, "#1F78C1"), (2, "#73BF69"), (3, "#FADE2A"), (4, "#FF9830"), (5, "#F2495C"), (6, "#8B0000")]
CLASS_NAMES = {"1": "I 类", "2": "II 类", "3": "III 类", "4": "IV 类", "5": "V 类", "6": "劣V 类"}
SHARES = 'r.indicator == "reservoir_at_designated" or r.indicator == "sections_up_to_standard"'


def dashboard() -> Dashboard:
    mapping = [{"type": "value", "options": {k: {"text": v} for k, v in CLASS_NAMES.items()}}]
    class_cells = [("mappings", mapping), ("custom.cellOptions", {"type": "color-background"})]
    shares = target("plan.surfacewater.sections_up_to_standard")
    return Dashboard("laoshan-surfacewater", "地表水与饮用水源 Surface and drinking water", [
        table("每日水质类别 Daily class per site vs designated class (GB 3838-2002, worst factor)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "surfacewater_daily" and {SITE_FILTER})
  |> filter(fn: (r) => r._field == "water_class" or r._field == "designated_class" or r._field == "meets_designated" or r._field == "limiting_factor")
  |> pivot(rowKey: ["_time", "site", "waterbody"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> sort(columns: ["_time"], desc: true)''', ("_time", "site", "water_class", "designated_class"),
              width=14, height=9, thresholds=CLASS_COLOURS,
              overrides={name: class_cells for name in ("water_class", "designated_class")}),
        stat("规划指标 Plan l.269: reservoir, sections up to standard", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "surfacewater" and ({SHARES}) and r._field == "value")
  |> group(columns: ["indicator"]) |> keep(columns: ["_time", "_value", "indicator"])''', ("_time", "_value", "indicator"),
             unit="percentunit", width=6, height=9, thresholds=shares.steps()),
        stat("劣V类水体 Water bodies worse than class V (target 0)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "surfacewater" and r.indicator == "worse_than_v" and r._field == "value")
  |> keep(columns: ["_time", "_value"])''', ("_time", "_value"), decimals=0, width=4, height=9,
             thresholds=target("plan.surfacewater.worse_than_v").steps()),
        timeseries("氨氮与总磷 Ammonia nitrogen and total phosphorus, daily mean (mg/L)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "surfacewater_daily" and (r._field == "ammonia_nitrogen" or r._field == "total_phosphorus") and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "_field", "site"])''', ("_time", "_value", "_field", "site"), width=12, height=8),
        timeseries("溶解氧与水温 Dissolved oxygen (mg/L) and water temperature (°C)", f'''
from(bucket: "telemetry") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "surfacewater" and (r._field == "dissolved_oxygen" or r._field == "water_temperature") and {SITE_FILTER})
  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
  |> keep(columns: ["_time", "_value", "_field", "site"])''', ("_time", "_value", "_field", "site"), width=12, height=8),
    ], tags=["surfacewater"], variables=[site_variable("surfacewater_daily")])
