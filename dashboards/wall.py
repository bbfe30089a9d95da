"""The city wall: one tile per plan target (value against the target read from the plan file, red
where missed), "Will we make it?" for the cumulative ones, a map of every site coloured by its alert
status, and the firing alerts. Readable from across the room: big numbers, few panels."""
from __future__ import annotations

from dashboards.panels import RANGE, Dashboard, Panel, geomap, stat, table
from dashboards.targets import Target, all_targets, outlook_table
from schemas.sites import load_sites

UNITS = {"%": "percentunit", "µg/m³": "conc:ugm3", "spaces": "none"}


def target_tile(t: Target) -> Panel:
    """The wall tile of one measured plan target: the latest district value, coloured by the target in
    force today (regenerate after a plan change). Spaces added without an operator baseline shows
    'baseline not set' instead of a number."""
    select = (f'r._measurement == "indicator" and r.domain == "{t.domain}" and r.indicator == "{t.indicator}" '
              'and r.scope == "district"')
    if t.indicator == "spaces_added":
        flux = f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => {select})
  |> filter(fn: (r) => r._field == "value" or r._field == "baseline_set")
  |> last() |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value") |> group()
  |> map(fn: (r) => ({{_time: r._time, _value: if r.baseline_set == 1 and exists r.value then float(v: r.value) else -1.0}}))
  |> sort(columns: ["_time"]) |> last()'''
        mappings = {"-1": ("基线未设置 baseline not set", "orange")}
    else:
        flux = f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => {select} and r._field == "value")
  |> last() |> keep(columns: ["_time", "_value"])'''
        mappings = None
    sign = "<" if t.lower_is_better else "≥"
    goal = t.value()
    shown = f"{goal:,.0f}" if t.unit == "spaces" else (f"{goal:.0%}" if t.unit == "%" else f"{goal:g} {t.unit}")
    return stat(f"{t.title_zh} {t.title_en} ({sign} {shown})", flux, ("_value",), unit=UNITS.get(t.unit, "none"),
                decimals=1 if t.unit != "spaces" else 0, thresholds=t.steps(), width=6, height=6, mappings=mappings,
                description=f"{t.key}: source and dates in schemas/plan.toml; red where the target is missed")


def site_map() -> Panel:
    rows = ", ".join(f'{{site: "{s.id}", name: "{s.name_zh} {s.name}", domain: "{s.domain}", lat: {s.lat}, lon: {s.lon}}}'
                     for s in load_sites())
    return geomap("站点状态 Sites by status (red: firing alert)", f'''
import "array"
import "join"
sites = array.from(rows: [{rows}])
firing = union(tables: [array.from(rows: [{{site: "", firing: 0}}]), from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "alerts" and r._field == "state")
  |> group(columns: ["rule", "entity", "site"]) |> last()
  |> filter(fn: (r) => r._value == "firing")
  |> group(columns: ["site"]) |> count() |> group()
  |> map(fn: (r) => ({{site: r.site, firing: r._value}}))])  // never empty: join.left refuses an empty side
join.left(left: sites, right: firing, on: (l, r) => l.site == r.site,
          as: (l, r) => ({{l with status: if exists r.firing and r.firing > 0 then 2 else 0}}))''', ("site", "lat", "lon", "status"),
                  width=14, height=13, thresholds=[(None, "green"), (1, "orange"), (2, "red")])


def firing_alerts() -> Panel:
    return table("当前告警 Firing alerts", f'''
from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "alerts")
  |> filter(fn: (r) => r._field == "state" or r._field == "severity" or r._field == "value" or r._field == "title_zh" or r._field == "alert_id")
  |> group(columns: ["rule", "entity", "_field"]) |> last()
  |> pivot(rowKey: ["rule", "entity", "site", "domain"], columnKey: ["_field"], valueColumn: "_value")
  |> filter(fn: (r) => r.state == "firing")
  |> group() |> keep(columns: ["_time", "domain", "site", "rule", "severity", "value", "title_zh", "alert_id"])''',
                 ("domain", "site", "rule", "severity", "alert_id"), width=10, height=13)


def dashboard() -> Dashboard:
    tiles = [target_tile(t) for t in all_targets() if not t.not_measured]
    return Dashboard("laoshan-city-wall", "崂山城市运行 Laoshan city wall",
                     tiles + [outlook_table(), site_map(), firing_alerts()], tags=["wall"], time_from="now-7d",
                     refresh="30s")
