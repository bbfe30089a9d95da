"""Garbage sorting dashboard (rates against the plan, bin fill heatmap) and the wall's 35% tile."""
from dashboards.builder import RANGE, SITE_FILTER, Dashboard, heatmap, site_variable, stat, timeseries

RATE_35 = [(None, "red"), (0.35, "green")]


def wall_tile():
    return stat("回收利用率 Recycling rate vs the plan's 35%", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "garbage" and r.indicator == "recycling_rate" and r._field == "value")
  |> last() |> keep(columns: ["_time", "_value"])''', ("_value",), unit="percentunit", decimals=1, thresholds=RATE_35,
                width=4, height=7,
                description="The plan's 资源化利用率 35% (l.273) is shown against the recycling rate (回收利用率), "
                            "which the national target uses; the weighted resource-utilisation rate is on the garbage dashboard")


def dashboard() -> Dashboard:
    def rate(title: str, name: str, thresholds):  # noqa: ANN001, ANN202
        return stat(title, f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "garbage" and r.indicator == "{name}" and r._field == "value")
  |> last() |> keep(columns: ["_value"])''', ("_value",), unit="percentunit", decimals=1, thresholds=thresholds,
                    width=6, height=5)
    return Dashboard("laoshan-garbage", "垃圾分类 Garbage sorting", [
        rate("回收利用率 Recycling rate (plan 35%)", "recycling_rate", RATE_35),
        rate("资源化利用率 Resource utilisation (weighted)", "resource_rate", RATE_35),
        rate("无害化处理率 Harmless treatment (plan 100%)", "harmless_rate", [(None, "red"), (1.0, "green")]),
        rate("集中清运率 Collection (plan 100%)", "collection_rate", [(None, "red"), (1.0, "green")]),
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
