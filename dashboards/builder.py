"""A small Grafana dashboard builder: panels with Flux queries on the InfluxDB datasource.

Each panel also records what its query must return (`expect`: the columns a result row must have), so
tests can run every query against the real InfluxDB; `expect` is not part of the dashboard JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE = {"type": "influxdb", "uid": "influxdb-laoshan"}
RANGE = "range(start: v.timeRangeStart, stop: v.timeRangeStop)"


def bilingual(en: str, zh: str) -> str:
    return f"{zh} {en}"


@dataclass
class Panel:
    """One panel: its Grafana JSON plus the columns its query must return."""

    title: str
    type: str
    flux: str
    expect: tuple[str, ...]
    width: int = 8
    height: int = 8
    unit: str | None = None
    decimals: int | None = None
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    field_config: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""

    def to_json(self, pid: int, x: int, y: int) -> dict[str, Any]:
        defaults: dict[str, Any] = {**self.field_config}
        if self.unit:
            defaults["unit"] = self.unit
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.thresholds:
            defaults["thresholds"] = {"mode": "absolute", "steps": [
                {"value": value, "color": color} for value, color in self.thresholds]}
            defaults.setdefault("color", {"mode": "thresholds"})
        return {
            "id": pid, "type": self.type, "title": self.title, "description": self.description,
            "datasource": DATASOURCE, "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "targets": [{"refId": "A", "datasource": DATASOURCE, "query": self.flux.strip()}],
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
        }


def stat(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    kw.setdefault("options", {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                              "colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                              "justifyMode": "center"})
    return Panel(title, "stat", flux, expect, **kw)


def timeseries(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    kw.setdefault("options", {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                              "tooltip": {"mode": "multi", "sort": "desc"}})
    return Panel(title, "timeseries", flux, expect, **kw)


def table(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    kw.setdefault("options", {"showHeader": True, "cellHeight": "sm"})
    return Panel(title, "table", flux, expect, **kw)


def heatmap(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    kw.setdefault("options", {"calculate": False, "color": {"mode": "scheme", "scheme": "Oranges"},
                              "yAxis": {"axisPlacement": "left"}, "cellGap": 1})
    return Panel(title, "heatmap", flux, expect, **kw)


def geomap(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    kw.setdefault("options", {
        "view": {"id": "coords", "lat": 36.18, "lon": 120.58, "zoom": 10.5},
        "controls": {"showZoom": True, "mouseWheelZoom": False},
        "basemap": {"type": "default", "name": "Basemap"},
        "layers": [{"type": "markers", "name": "sites", "location": {"mode": "coords", "latitude": "lat",
                                                                        "longitude": "lon"},
                    "config": {"size": {"fixed": 8}, "color": {"field": "status"}, "showLegend": True}}]})
    return Panel(title, "geomap", flux, expect, **kw)


@dataclass
class Dashboard:
    uid: str
    title: str
    panels: list[Panel]
    tags: list[str] = field(default_factory=list)
    variables: list[dict[str, Any]] = field(default_factory=list)
    time_from: str = "now-2d"
    refresh: str = "1m"

    def to_json(self) -> dict[str, Any]:
        """Grafana dashboard JSON, panels laid out left to right in rows of 24 columns."""
        panels, x, y, row_height = [], 0, 0, 0
        for i, p in enumerate(self.panels, start=1):
            if x + p.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(p.to_json(i, x, y))
            x += p.width
            row_height = max(row_height, p.height)
        return {
            "uid": self.uid, "title": self.title, "tags": ["laoshan", *self.tags], "timezone": "Asia/Shanghai",
            "editable": False, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"}, "templating": {"list": self.variables},
            "annotations": {"list": []}, "panels": panels,
        }


def site_variable(measurement: str, bucket: str = "compliance") -> dict[str, Any]:
    """A multi-select `site` variable listing the sites that have `measurement` points."""
    query = (f'import "influxdata/influxdb/schema"\n'
             f'schema.tagValues(bucket: "{bucket}", tag: "site", predicate: (r) => r._measurement == "{measurement}", '
             'start: -365d)')
    return {"name": "site", "label": "站点 Site", "type": "query", "datasource": DATASOURCE, "query": query,
            "definition": query, "refresh": 2, "multi": True, "includeAll": True, "current": {},
            "allValue": ".*", "sort": 1}


SITE_FILTER = 'r.site =~ /^${site:regex}$/'
