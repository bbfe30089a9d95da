"""Grafana panels and dashboards built with grafana-foundation-sdk's typed builders (Grafana's own
dashboards-as-code library), each panel carrying its Flux query on the InfluxDB datasource.

Each panel also records what its query must return (`expect`: the columns a result row must have), so
tests can run every query against the real InfluxDB; `expect` is not part of the dashboard JSON.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap as geomap_b
from grafana_foundation_sdk.builders import heatmap as heatmap_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import timeseries as timeseries_b
from grafana_foundation_sdk.builders.common import (
    FrameGeometrySource,
    GraphThresholdsStyleConfig,
    MapLayerOptions,
    ReduceDataOptions,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as heatmap_m

DATASOURCE = {"type": "influxdb", "uid": "influxdb-laoshan"}
DATASOURCE_REF = dm.DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"])
RANGE = "range(start: v.timeRangeStart, stop: v.timeRangeStop)"
SITE_FILTER = 'r.site =~ /^${site:regex}$/'
Steps = list[tuple[float | None, str]]


class FluxQuery(cogvariants.Dataquery):
    """An InfluxDB (Flux) target: the SDK ships no InfluxDB query type, so this is the dataquery variant
    the InfluxDB datasource reads (refId, datasource, query)."""

    def __init__(self, query: str, ref_id: str = "A") -> None:
        self.query, self.ref_id = query, ref_id

    def to_json(self) -> dict[str, object]:
        return {"refId": self.ref_id, "datasource": DATASOURCE_REF, "query": self.query}


class Flux(cogbuilder.Builder[FluxQuery]):
    """Builder for FluxQuery, so it plugs into the SDK's `with_target`."""

    def __init__(self, query: str) -> None:
        self._query = FluxQuery(query.strip())

    def build(self) -> FluxQuery:
        return self._query


@dataclass
class Panel:
    """One panel: the SDK builder (without position) plus the Flux and the columns its query must return."""

    title: str
    flux: str
    expect: tuple[str, ...]
    builder: Any
    width: int = 8
    height: int = 8


def _thresholds(steps: Steps) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(v, c) for v, c in steps])


def _panel(kind: Callable[[], Any], title: str, flux: str, expect: tuple[str, ...], *, width: int = 8,
           height: int = 8, unit: str | None = None, decimals: int | None = None, thresholds: Steps | None = None,
           description: str = "", no_value: str | None = None,
           mappings: dict[str, str | tuple[str, str]] | None = None,
           minimum: float | None = None, maximum: float | None = None,
           overrides: dict[str, list[tuple[str, object]]] | None = None) -> tuple[Any, dict[str, Any]]:
    """The settings every panel type shares; returns the builder for type-specific options.
    `mappings`: value -> text, or value -> (text, colour) to override the threshold colour."""
    b = kind().title(title).description(description).datasource(DATASOURCE_REF).with_target(Flux(flux))
    if unit:
        b.unit(unit)
    if decimals is not None:
        b.decimals(decimals)
    if thresholds:
        b.thresholds(_thresholds(thresholds)).color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
    if no_value:
        b.no_value(no_value)
    if mappings:
        b.mappings([dm.ValueMap({k: dm.ValueMappingResult(text=v) if isinstance(v, str) else
                                 dm.ValueMappingResult(text=v[0], color=v[1]) for k, v in mappings.items()})])
    if minimum is not None:
        b.min(minimum)
    if maximum is not None:
        b.max(maximum)
    for name, props in (overrides or {}).items():
        b.override_by_name(name, [dm.DynamicConfigValue(k, v) for k, v in props])
    return b, {"title": title, "flux": flux, "expect": expect, "width": width, "height": height}


def stat(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    """A big number coloured by its thresholds (the wall's tiles)."""
    b, meta = _panel(stat_b.Panel, title, flux, expect, **kw)
    b.reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)) \
        .color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE) \
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME).justify_mode(common.BigValueJustifyMode.CENTER)
    return Panel(builder=b, **meta)


def timeseries(title: str, flux: str, expect: tuple[str, ...], *, threshold_style: str | None = None,
               **kw: Any) -> Panel:
    """Lines over time; `threshold_style` ("area", "line") draws the threshold steps on the graph."""
    b, meta = _panel(timeseries_b.Panel, title, flux, expect, **kw)
    b.legend(VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
             .placement(common.LegendPlacement.BOTTOM).show_legend(True)) \
        .tooltip(VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    if threshold_style:
        b.thresholds_style(GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode(threshold_style)))
    return Panel(builder=b, **meta)


def table(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    b, meta = _panel(table_b.Panel, title, flux, expect, **kw)
    b.show_header(True).cell_height(common.TableCellHeight.SM)
    return Panel(builder=b, **meta)


def heatmap(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    b, meta = _panel(heatmap_b.Panel, title, flux, expect, **kw)
    b.calculate(False).color(heatmap_b.HeatmapColorOptions().mode(heatmap_m.HeatmapColorMode.SCHEME)
                             .scheme("Oranges")).y_axis(heatmap_b.YAxisConfig().axis_placement(common.AxisPlacement.LEFT)) \
        .cell_gap(1)
    return Panel(builder=b, **meta)


def geomap(title: str, flux: str, expect: tuple[str, ...], **kw: Any) -> Panel:
    """Markers at each row's lat/lon, coloured by its `status` field."""
    b, meta = _panel(geomap_b.Panel, title, flux, expect, **kw)
    b.view(geomap_b.MapViewConfig().id("coords").lat(36.18).lon(120.58).zoom(10.5)) \
        .controls(geomap_b.ControlsOptions().show_zoom(True).mouse_wheel_zoom(False)) \
        .basemap(MapLayerOptions().type("default").name("Basemap")) \
        .layers([MapLayerOptions().type("markers").name("sites")
                 .location(FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                           .latitude("lat").longitude("lon"))
                 .config({"size": {"fixed": 8}, "color": {"field": "status"}, "showLegend": True})])
    return Panel(builder=b, **meta)


@dataclass
class Dashboard:
    uid: str
    title: str
    panels: list[Panel]
    tags: list[str] = field(default_factory=list)
    variables: list[db.QueryVariable] = field(default_factory=list)
    time_from: str = "now-2d"
    refresh: str = "1m"

    def to_json(self) -> dict[str, Any]:
        """Grafana dashboard JSON from the SDK's builder, panels laid out left to right in rows of 24
        columns (a panel that does not fit starts the next row)."""
        b = db.Dashboard(self.title).uid(self.uid).tags(["laoshan", *self.tags]).timezone("Asia/Shanghai") \
            .readonly().tooltip(dm.DashboardCursorSync.CROSSHAIR).time(self.time_from, "now") \
            .refresh(self.refresh).version(1)
        for v in self.variables:
            b.with_variable(v)
        x, y, row_height = 0, 0, 0
        for i, p in enumerate(self.panels, start=1):
            if x + p.width > 24:
                x, y, row_height = 0, y + row_height, 0
            b.with_panel(p.builder.id(i).grid_pos(dm.GridPos(h=p.height, w=p.width, x=x, y=y)))
            x += p.width
            row_height = max(row_height, p.height)
        return json.loads(json.dumps(b.build(), cls=JSONEncoder))


def site_variable(measurement: str, bucket: str = "compliance") -> db.QueryVariable:
    """A multi-select `site` variable listing the sites that have `measurement` points."""
    query = (f'import "influxdata/influxdb/schema"\n'
             f'schema.tagValues(bucket: "{bucket}", tag: "site", predicate: (r) => r._measurement == "{measurement}", '
             'start: -365d)')
    return db.QueryVariable("site").label("站点 Site").datasource(DATASOURCE_REF).query(query) \
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True).all_value(".*") \
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
