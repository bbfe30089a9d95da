"""A static picture of the city wall for people who cannot open Grafana (the daily briefing).

Reads the latest district indicators from InfluxDB and draws one tile per plan target of the plan
file (dashboards/targets.py): the figure against the target stored with it (the entry in force on the
figure's own local day), green when met, red when missed, amber while the parking baseline is not set,
grey when the pipeline does not measure it; "Will we make it?" under each cumulative one; under a red
one the open breach alerts that answer it, or why none does (`why_red`); plus the firing alerts per
domain and kind. Chinese labels whenever a CJK font is installed.
"""
from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # CJK fonts have one weight
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from dashboards import alertloop  # noqa: E402
from dashboards.targets import Standing, all_targets  # noqa: E402
from infra.clients import influx_client  # noqa: E402
from infra.settings import Settings  # noqa: E402

CJK_NAMES = ("WenQuanYi", "Noto Sans CJK", "Noto Serif CJK", "Source Han", "SimHei", "Droid Sans Fallback")
CJK_FILES = ("wqy", "notosanscjk", "notoserifcjk", "sourcehan", "simhei", "droidsansfallback")
COLOURS = {"met": "#1E5631", "missed": "#8B0000", "baseline-not-set": "#B36B00", "not-measured": "#3A3A3A",
           "no-data": "#3A3A3A"}
STATE_TEXT = {"met": ("meets", "达标"), "missed": ("misses", "未达标"), "baseline-not-set": ("baseline not set", "基线未设置"),
              "not-measured": ("not measured", "未监测"), "no-data": ("no data", "无数据")}


def latest_indicators(settings: Settings, start_ns: int = 0, stop_ns: int | None = None
                      ) -> dict[tuple[str, str], dict[str, Any]]:
    """The latest district indicator point per (domain, indicator) in [start_ns, stop_ns), all its fields."""
    stop = f", stop: time(v: {stop_ns})" if stop_ns is not None else ""
    flux = (f'from(bucket: "{settings.influx.bucket_compliance}") |> range(start: time(v: {start_ns}){stop}) '
            '|> filter(fn: (r) => r._measurement == "indicator" and r.scope == "district") |> last()')
    out: dict[tuple[str, str], dict[str, Any]] = {}
    with influx_client(settings) as client:
        for t in client.query_api().query(flux):
            for r in t.records:
                out.setdefault((r.values["domain"], r.values["indicator"]), {})[r.get_field()] = r.get_value()
    return out


def standings(indicators: dict[tuple[str, str], dict[str, Any]]) -> list[Standing]:
    """Every plan target with the latest figure that measures it."""
    return [Standing(t, indicators.get((t.domain, t.indicator), {}) if t.indicator else {}) for t in all_targets()]


def _firing(settings: Settings) -> int:
    flux = (f'from(bucket: "{settings.influx.bucket_compliance}") |> range(start: -30d) '
            '|> filter(fn: (r) => r._measurement == "alerts" and r._field == "state") '
            '|> group(columns: ["rule", "entity"]) |> last() |> filter(fn: (r) => r._value == "firing") |> group() |> count()')
    with influx_client(settings) as client:
        return sum(int(r.get_value()) for t in client.query_api().query(flux) for r in t.records)


def cjk_font() -> str | None:
    """A font with Chinese glyphs, if the machine has one (fonts-wqy-zenhei, fonts-noto-cjk). Matplotlib's
    font cache may predate the font's installation: the font files on disk are added to it explicitly."""
    for f in font_manager.fontManager.ttflist:
        if any(k in f.name for k in CJK_NAMES):
            return f.name
    for path in font_manager.findSystemFonts():
        if any(k in Path(path).name.lower().replace("-", "").replace("_", "") for k in CJK_FILES):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue
            name = font_manager.FontProperties(fname=path).get_name()
            if any(k in name for k in CJK_NAMES):
                return name
    return None


def why_red(s: Standing, loop: alertloop.LoopStats) -> tuple[str, str] | None:
    """For a target shown red: the open (or acknowledged) breach alerts of its domain that answer it, or
    why there is none (a year-to-date target is judged at year end: no alert before then). None: not red."""
    if s.state != "missed":
        return None
    n = loop.open.get((s.target.domain, "breach"), (0, 0.0))[0]
    if n:
        return f"{n} breach alert(s) of {s.target.domain} open", f"{s.target.domain} 有 {n} 条超标告警处理中"
    if s.target.outlook:
        return ("year-to-date target, judged at year end: no alert before then (each day's breaches alert on "
                "their own rules)", "年度累计指标，年底评定，此前不告警（每日超标由各自规则告警）")
    return "no open alert answers this red target: check the alert rules", "无对应告警：请检查告警规则"


def _tile(ax: Any, s: Standing, chinese: bool, why: tuple[str, str] | None = None) -> None:
    t = s.target
    ax.set_facecolor(COLOURS[s.state])
    label = f"{t.title_zh}\n{t.title_en}" if chinese else t.title_en
    ax.text(0.5, 0.93, label, ha="center", va="top", fontsize=12, color="white", transform=ax.transAxes)
    big = {"baseline-not-set": "基线未设置" if chinese else "baseline not set",
           "not-measured": "未监测" if chinese else "not measured", "no-data": "无数据" if chinese else "no data"}
    ax.text(0.5, 0.52, big.get(s.state, s.shown), ha="center", va="center",
            fontsize=30 if s.state in ("met", "missed") else 22, fontweight="bold", color="white", transform=ax.transAxes)
    en, zh = s.target_text()
    ax.text(0.5, 0.33, zh if chinese else en, ha="center", fontsize=13, color="white", transform=ax.transAxes)
    o_en, o_zh = s.outlook_text()
    note = (o_zh if chinese else o_en) or ((t.not_measured_zh if chinese else t.not_measured) if t.not_measured else "")
    if why:
        note = f"{note}; {why[1] if chinese else why[0]}" if note else why[1] if chinese else why[0]
    if note:
        note = "\n".join(textwrap.fill(part.strip(), 54) for part in note.split(";"))
        ax.text(0.5, 0.04, note, ha="center", va="bottom", fontsize=9.5, color="#EEEEEE", transform=ax.transAxes)


def render(path: Path, settings: Settings, start_ns: int = 0, stop_ns: int | None = None
           ) -> tuple[list[Standing], int, bool]:
    """Draw the wall from InfluxDB to `path` (PNG, 1600x900): the latest figures in [start_ns, stop_ns)
    (the demo: its simulated day, like its report); returns every target's standing, the firing count
    and whether Chinese was drawn."""
    data, firing = standings(latest_indicators(settings, start_ns, stop_ns)), _firing(settings)
    return data, firing, draw(path, data, firing, alertloop.loop_stats(settings))


def draw(path: Path, data: list[Standing], firing: int, loop: alertloop.LoopStats | None = None) -> bool:
    """Draw the tiles of `data`, the firing count and the alert loop (MTTA/MTTR, open alerts by age) to
    `path`; returns whether Chinese was drawn."""
    font = cjk_font()
    if font:
        plt.rcParams["font.family"] = [font, "DejaVu Sans"]
    cols = 4
    rows = -(-(len(data) + 2) // cols)   # the targets, then the two alert tiles
    fig, axes = plt.subplots(rows, cols, figsize=(16, 9), dpi=100)
    fig.patch.set_facecolor("#111217")
    fig.suptitle("崂山城市运行 · 规划目标 Laoshan city wall: plan targets" if font else "Laoshan city wall: plan targets",
                 color="white", fontsize=22, fontweight="bold")
    cells = list(axes.flat)
    for ax in cells:
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_facecolor("#111217")
    for ax, s in zip(cells, data):
        _tile(ax, s, font is not None, why_red(s, loop or alertloop.LoopStats()))
    alertloop.draw(cells[len(data)], cells[len(data) + 1], firing, loop or alertloop.LoopStats(), font is not None)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, facecolor=fig.get_facecolor())
    plt.close(fig)
    return font is not None
