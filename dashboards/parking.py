"""Parking dashboard: networked lots and public spaces added against the plan (targets from the plan
file), occupancy bands from the plan's parking entries."""
from dashboards.panels import RANGE, SITE_FILTER, Dashboard, site_variable, stat, table, timeseries
from dashboards.targets import Target, outlook_table, target
from dashboards.wall import target_tile
from schemas.thresholds import load_plan, today

TARGETS = (  # the plan targets this domain's indicators are judged against (the wall's tiles)
    Target("plan.parking.networked_share", "parking", "networked_rate", "Commercial lots networked",
           "经营性停车场联网率", "%"),
    Target("plan.parking.new_public_spaces", "parking", "spaces_added", "New public parking spaces",
           "新增公共停车位", "spaces", outlook=True),
)


def occupancy_steps() -> list[tuple[float | None, str]]:
    """Green inside the target band, yellow above it, red above saturation (plan file parking.*)."""
    plan = load_plan()
    band = plan.get("parking.target_band", today()).array()
    return [(None, "green"), (float(band[-1]), "yellow"), (plan.value("parking.saturated", today()), "red")]


def dashboard() -> Dashboard:
    networked = target("plan.parking.networked_share")
    steps = occupancy_steps()
    return Dashboard("laoshan-parking", "停车泊位 Parking", [
        stat(f"联网率 Networked rate (plan {networked.value():.0%})", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "parking" and r.indicator == "networked_rate" and r._field == "value")
  |> last() |> keep(columns: ["_value"])''', ("_value",), unit="percentunit", width=8, height=5,
             thresholds=networked.steps()),
        target_tile(target("plan.parking.new_public_spaces")),
        stat("全区占用率 District occupancy", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "indicator" and r.domain == "parking" and r.indicator == "occupancy" and r._field == "value")
  |> last() |> keep(columns: ["_value"])''', ("_value",), unit="percentunit", width=10, height=5, thresholds=steps),
        outlook_table("parking", height=4),
        timeseries("小时占用率 Hourly occupancy per lot", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "parking_hourly" and r._field == "occupancy" and {SITE_FILTER})
  |> keep(columns: ["_time", "_value", "site"])''', ("_time", "_value", "site"), unit="percentunit", width=16, height=9,
                   thresholds=steps, threshold_style="line", minimum=0, maximum=1),
        table("停车场 Lots: latest hour", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "parking_hourly" and {SITE_FILTER})
  |> last() |> pivot(rowKey: ["_time", "site"], columnKey: ["_field"], valueColumn: "_value")
  |> group() |> keep(columns: ["site", "occupancy", "occupancy_max", "capacity", "saturated", "reports"])''',
              ("site", "occupancy", "capacity", "saturated"), width=8, height=9),
    ], tags=["parking"], variables=[site_variable("parking_hourly")])
