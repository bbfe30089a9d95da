"""The city wall: one tile per domain (plan target vs today's value), a map of every site coloured by
its alert status, and the firing alerts. Readable from across the room: big numbers, few panels."""
from __future__ import annotations

import importlib
import pkgutil

from dashboards.builder import RANGE, Dashboard, Panel, geomap, table
from schemas.sites import load_sites


def domain_modules() -> list:
    """Dashboard modules of the domains (those with a `wall_tile`), in the schemas' domain order."""
    from schemas import domain_names

    found = {}
    for info in pkgutil.iter_modules(importlib.import_module("dashboards").__path__):
        module = importlib.import_module(f"dashboards.{info.name}")
        if hasattr(module, "wall_tile") and hasattr(module, "dashboard"):
            found[info.name] = module
    order = ["air", "seawater", "parking", "fire", "garbage"]
    return [found[n] for n in order + sorted(set(found) - set(order)) if n in found and n in domain_names()]


def site_map() -> Panel:
    rows = ", ".join(f'{{site: "{s.id}", name: "{s.name_zh} {s.name}", domain: "{s.domain}", lat: {s.lat}, lon: {s.lon}}}'
                     for s in load_sites())
    return geomap("站点状态 Sites by status (red: firing alert)", f'''
import "array"
import "join"
sites = array.from(rows: [{rows}])
firing = from(bucket: "compliance") |> {RANGE}
  |> filter(fn: (r) => r._measurement == "alerts" and r._field == "state")
  |> group(columns: ["rule", "entity", "site"]) |> last()
  |> filter(fn: (r) => r._value == "firing")
  |> group(columns: ["site"]) |> count() |> group()
  |> map(fn: (r) => ({{site: r.site, firing: r._value}}))
join.left(left: sites, right: firing, on: (l, r) => l.site == r.site,
          as: (l, r) => ({{l with status: if exists r.firing then 2 else 0}}))''', ("site", "lat", "lon", "status"),
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
    tiles = [m.wall_tile() for m in domain_modules()]
    return Dashboard("laoshan-city-wall", "崂山城市运行 Laoshan city wall", tiles + [site_map(), firing_alerts()],
                     tags=["wall"], time_from="now-7d", refresh="30s")
