"""A static picture of the city wall for people who cannot open Grafana (the daily briefing).

Reads the latest district indicators from InfluxDB and draws one tile per domain: today's value
against the plan's target, green when it meets it, red when it does not; plus the firing alerts.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # CJK fonts have one weight
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from dashboards import alertloop  # noqa: E402
from infra.clients import influx_client  # noqa: E402
from infra.settings import Settings  # noqa: E402


@dataclass
class Tile:
    """One domain's headline: value vs target, and whether lower is better."""

    domain: str
    title_en: str
    title_zh: str
    value: float | None
    target: float | None
    unit: str
    lower_is_better: bool = False
    note: str = ""
    note_zh: str = ""

    @property
    def meets(self) -> bool | None:
        if self.value is None or self.target is None:
            return None
        return self.value <= self.target if self.lower_is_better else self.value >= self.target

    def text(self, value: float | None) -> str:
        if value is None:
            return "no data"
        return f"{value:.0%}" if self.unit == "%" else f"{value:.1f} {self.unit}".strip()


def _latest(settings: Settings) -> dict[tuple[str, str], dict[str, float]]:
    flux = (f'from(bucket: "{settings.influx.bucket_compliance}") |> range(start: 0) '
            '|> filter(fn: (r) => r._measurement == "indicator" and r.scope == "district") |> last()')
    out: dict[tuple[str, str], dict[str, float]] = {}
    with influx_client(settings) as client:
        for t in client.query_api().query(flux):
            for r in t.records:
                out.setdefault((r.values["domain"], r.values["indicator"]), {})[r.get_field()] = r.get_value()
    return out


def _firing(settings: Settings) -> int:
    flux = (f'from(bucket: "{settings.influx.bucket_compliance}") |> range(start: -30d) '
            '|> filter(fn: (r) => r._measurement == "alerts" and r._field == "state") '
            '|> group(columns: ["rule", "entity"]) |> last() |> filter(fn: (r) => r._value == "firing") |> group() |> count()')
    with influx_client(settings) as client:
        return sum(int(r.get_value()) for t in client.query_api().query(flux) for r in t.records)


def tiles(settings: Settings) -> tuple[list[Tile], int]:
    """The five domain tiles from InfluxDB, and the number of firing alerts."""
    ind = _latest(settings)

    def get(domain: str, name: str, field: str = "value") -> float | None:
        return ind.get((domain, name), {}).get(field)

    air = ind.get(("air", "pm25_ytd"), {})
    return [
        Tile("air", "PM2.5 year to date", "PM2.5 年均值(至今)", air.get("value"), air.get("target", 35.0), "µg/m³",
             lower_is_better=True, note=f"stretch {air.get('stretch', 33.5):g}; projection "
                                       f"{air['projection']:.1f}" if "projection" in air else "stretch 33.5"),
        Tile("seawater", "Sea water class I-II share", "近岸海域优良率", get("seawater", "good_share"),
             get("seawater", "good_share", "target"), "%"),
        Tile("parking", "Commercial lots networked", "经营性停车场联网率", get("parking", "networked_rate"),
             get("parking", "networked_rate", "target"), "%",
             note=f"district occupancy {get('parking', 'occupancy') or 0:.0%}"),
        Tile("fire", "Forest zones with a danger level", "林区火险等级覆盖", get("fire", "zones_covered"),
             get("fire", "zones_covered", "target"), "%",
             note=f"highest level today: {int(get('fire', 'max_level') or 0)}"),
        Tile("garbage", "Recycling rate (plan: 35%)", "回收利用率(规划35%)", get("garbage", "recycling_rate"),
             get("garbage", "recycling_rate", "target"), "%", note="the plan's 35% shown against the recycling rate",
             note_zh="规划资源化利用率35%对照回收利用率"),
    ], _firing(settings)


def cjk_font() -> str | None:
    """A font with Chinese glyphs, if the machine has one (fonts-wqy-zenhei, fonts-noto-cjk)."""
    for f in font_manager.fontManager.ttflist:
        if any(k in f.name for k in ("WenQuanYi", "Noto Sans CJK", "Noto Serif CJK", "Source Han", "SimHei")):
            return f.name
    return None


def render(path: Path, settings: Settings) -> tuple[list[Tile], int, bool]:
    """Draw the wall to `path` (PNG); returns the tiles, the firing count and whether Chinese was drawn."""
    data, firing = tiles(settings)
    font = cjk_font()
    if font:
        plt.rcParams["font.family"] = [font, "DejaVu Sans"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), dpi=100)
    fig.patch.set_facecolor("#111217")
    title = "崂山城市运行 Laoshan city wall" if font else "Laoshan city wall"
    fig.suptitle(title, color="white", fontsize=26, fontweight="bold")
    for ax, tile in zip(axes.flat, data + [None]):
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        if tile is None:
            alertloop.draw(ax, firing, alertloop.loop_stats(settings), font is not None)
            continue
        ok = tile.meets
        ax.set_facecolor({True: "#1E5631", False: "#8B0000", None: "#3A3A3A"}[ok])
        label = f"{tile.title_zh}\n{tile.title_en}" if font else tile.title_en
        ax.text(0.5, 0.86, label, ha="center", va="top", fontsize=17, color="white", transform=ax.transAxes)
        ax.text(0.5, 0.47, tile.text(tile.value), ha="center", va="center", fontsize=50, fontweight="bold",
                color="white", transform=ax.transAxes)
        target = "target " + ("≤ " if tile.lower_is_better else "≥ ") + tile.text(tile.target) if tile.target is not None else "no target"
        ax.text(0.5, 0.2, target, ha="center", fontsize=18, color="white", transform=ax.transAxes)
        note = tile.note_zh if font and tile.note_zh else tile.note
        if note:
            ax.text(0.5, 0.07, note, ha="center", fontsize=12, color="#DDDDDD", transform=ax.transAxes)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, facecolor=fig.get_facecolor())
    plt.close(fig)
    return data, firing, font is not None
