"""Garbage sorting dashboard: the plan's rates (targets from the plan file), the year-to-date recycling
rate with its outlook, bin fill heatmap."""
from dashboards.panels import RANGE, SITE_FILTER, Dashboard, heatmap, site_variable, stat, timeseries
from dashboards.targets import Target, outlook_table, target

TARGETS = (  # the plan targets this domain's indicators are judged against (the wall's tiles)
    Target("plan.garbage.recycling_rate", "garbage", "recycling_rate_ytd", "Recycling rate (year to date)",
           "回收利用率(年初至今)", "%", outlook=True),
    Target("plan.garbage.harmless_rate", "garbage", "harmless_rate", "Harmless treatment rate", "无害化处理率", "%"),
    Target("plan.garbage.collection_rate", "garbage", "collection_rate", "Collection rate (bins emptied in time)",
           "集中清运率", "%"),
)


def dashboard() -> Dashboard:
    def rate(title: str, name: str, t: Target | None, description: str = ""):  # noqa: ANN202
        steps = (t or target("plan.garbage.recycling_rate")).steps()
        return stat(title, f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "garbage" and r.indicator == "{name}" and r._field == "value")
  |> last() |> keep(columns: ["_value"])''', ("_value",), unit="percentunit", decimals=1, thresholds=steps,
                    width=6, height=5, description=description)
    recycling, harmless = target("plan.garbage.recycling_rate"), target("plan.garbage.harmless_rate")
    collection = target("plan.garbage.collection_rate")
    return Dashboard("laoshan-garbage", "垃圾分类 Garbage sorting", [
        rate(f"回收利用率 Recycling rate, year to date (plan {recycling.value():.0%})", "recycling_rate_ytd", recycling,
             "The plan's 资源化利用率 35% (l.273) is shown against the recycling rate (回收利用率), which the national "
             "target uses; the weighted resource-utilisation rate is beside it"),
        rate("资源化利用率 Resource utilisation (weighted, today)", "resource_rate", None),
        rate(f"无害化处理率 Harmless treatment (plan {harmless.value():.0%})", "harmless_rate", harmless),
        rate(f"集中清运率 Collection (plan {collection.value():.0%})", "collection_rate", collection),
        outlook_table("garbage", height=4),
        heatmap("垃圾桶满溢 Bin fill level (hourly max)", f'''
from(bucket: "telemetry") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "garbage" and r._field == "fill_level" and {SITE_FILTER})
  |> aggregateWindow(every: 1h, fn: max, createEmpty: false)
  |> keep(columns: ["_time", "_value", "sensor"])''', ("_time", "_value", "sensor"), width=16, height=10,
                unit="percentunit"),
        timeseries("每日产生量 Daily intake by category (kg)", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "garbage_daily")
  |> filter(fn: (r) => r._field == "recyclable_kg" or r._field == "kitchen_kg" or r._field == "residual_kg" or r._field == "hazardous_kg")
  |> keep(columns: ["_time", "_value", "_field"])''', ("_time", "_value", "_field"), unit="masskg", width=8, height=10),
    ], tags=["garbage"], variables=[site_variable("garbage", bucket="telemetry")])
