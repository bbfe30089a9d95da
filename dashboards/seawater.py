"""Nearshore sea-water dashboard (GB 3097 class bands from the plan file, green tide, class I-II share
against the plan with its outlook)."""
from dashboards.panels import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries
from dashboards.targets import Target, outlook_table, target
from schemas.thresholds import load_plan, today

TARGETS = (  # the plan targets this domain's indicators are judged against (the wall's tiles)
    Target("plan.seawater.good_share", "seawater", "good_share_ytd", "Sea water class I-II share (year to date)",
           "近岸海域水质优良率(年初至今)", "%", outlook=True),
)

CLASS_COLOURS = [(None, "#1F78C1"), (2, "#73BF69"), (3, "#FADE2A"), (4, "#FF9830"), (5, "#F2495C")]
CLASS_NAMES = {"1": "I 类", "2": "II 类", "3": "III 类", "4": "IV 类", "5": "劣四类"}


def nitrogen_steps() -> list[tuple[float | None, str]]:
    """Inorganic-nitrogen lines at the class II, III and IV limits of the plan file (GB 3097-1997)."""
    limits = load_plan().get("gb3097.inorganic_nitrogen", today()).array()
    return [(None, "green")] + [(float(v), c) for v, c in zip(limits[1:], ("yellow", "orange", "red"))]


def dashboard() -> Dashboard:
    share = target("plan.seawater.good_share")
    return Dashboard("laoshan-seawater", "近岸海域水质 Nearshore sea water", [
        stat(f"优良率 Class I-II share: today and year to date (plan {share.value():.0%})", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "seawater" and r._field == "value")
  |> filter(fn: (r) => r.indicator == "good_share" or r.indicator == "good_share_ytd")
  |> last() |> keep(columns: ["indicator", "_value"])''', ("indicator", "_value"), unit="percentunit", width=10,
             height=5, thresholds=share.steps()),
        outlook_table("seawater", width=14, height=5),
        table("每日水质类别 Daily class per buoy (GB 3097-1997, worst factor)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "seawater_daily" and {SITE_FILTER})
  |> filter(fn: (r) => r._field == "water_class" or r._field == "green_tide" or r._field == "inorganic_nitrogen" or r._field == "phosphate" or r._field == "dissolved_oxygen")
  |> pivot(rowKey: ["_time", "site"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> sort(columns: ["_time"], desc: true)''', ("_time", "site", "water_class", "green_tide"),
              width=12, height=9, thresholds=CLASS_COLOURS,
              overrides={"water_class": [("mappings", [{"type": "value", "options": {
                  k: {"text": v} for k, v in CLASS_NAMES.items()}}]),
                  ("custom.cellOptions", {"type": "color-background"})]}),
        timeseries("无机氮与活性磷酸盐 Inorganic N and phosphate (mg/L)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "seawater_daily" and (r._field == "inorganic_nitrogen" or r._field == "phosphate") and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "_field", "site"])''', ("_time", "_value", "_field", "site"), width=12, height=9,
                   thresholds=nitrogen_steps(), threshold_style="line"),
        timeseries("浒苔预警 Green tide: chlorophyll-a (µg/L) and turbidity (NTU)", f'''
from(bucket: "telemetry") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "seawater" and (r._field == "chlorophyll_a" or r._field == "turbidity") and {SITE_FILTER})
  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
  |> keep(columns: ["_time", "_value", "_field", "site"])''', ("_time", "_value", "_field", "site"), width=24, height=8),
    ], tags=["seawater"], variables=[site_variable("seawater_daily")])
