"""The closed loop measured: MTTA / MTTR per domain, open alerts by age and by domain, for Grafana and the wall.

Reads what the alert router writes to the `compliance` bucket: `alert_times` (tags rule, domain, site,
entity; time = when the alert fired; fields `fired` = 1, `tta_s` time to acknowledge, `ttr_s` time to
resolve, both in seconds) and `alerts` (one point per state change; fields `state`, `fired_at` in unix
seconds, ...). The same Flux serves the dashboard panels (Grafana's time range) and the wall picture
(the last 30 days).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from dashboards.panels import RANGE, Dashboard, Panel, stat, table
from infra.clients import influx_client
from infra.settings import Settings

AGES = ("< 1 h", "1–6 h", "6–24 h", "> 24 h")


def loop_flux(range_: str = RANGE, bucket: str = "compliance") -> str:
    """Per domain: alerts fired, mean time to acknowledge (mtta_s) and to resolve (mttr_s)."""
    return f'''
data = from(bucket: "{bucket}") |> {range_} |> filter(fn: (r) => r._measurement == "alert_times")
fired = data |> filter(fn: (r) => r._field == "fired") |> group(columns: ["domain"]) |> count()
  |> map(fn: (r) => ({{domain: r.domain, _field: "alerts", _value: float(v: r._value)}}))
times = data |> filter(fn: (r) => r._field == "tta_s" or r._field == "ttr_s") |> group(columns: ["domain", "_field"])
  |> mean() |> map(fn: (r) => ({{domain: r.domain, _field: if r._field == "tta_s" then "mtta_s" else "mttr_s", _value: r._value}}))
union(tables: [fired, times]) |> group() |> pivot(rowKey: ["domain"], columnKey: ["_field"], valueColumn: "_value")
  |> sort(columns: ["domain"])'''


def open_flux(range_: str = RANGE, bucket: str = "compliance") -> str:
    """Firing alerts counted by how long ago they fired (< 1 h, 1–6 h, 6–24 h, > 24 h; empty ones 0)."""
    zeros = ", ".join(f'{{age: "{a}", _value: 0}}' for a in AGES)
    return f'''
import "array"
none = array.from(rows: [{zeros}])
open = from(bucket: "{bucket}") |> {range_}
  |> filter(fn: (r) => r._measurement == "alerts" and (r._field == "state" or r._field == "fired_at"))
  |> group(columns: ["rule", "entity", "_field"]) |> last()
  |> pivot(rowKey: ["rule", "entity"], columnKey: ["_field"], valueColumn: "_value")
  |> filter(fn: (r) => r.state == "firing" and exists r.fired_at) |> group()
  |> map(fn: (r) => {{
      age_s = float(v: int(v: now())) / 1000000000.0 - r.fired_at
      return {{_value: 1, age: if age_s < 3600.0 then "{AGES[0]}" else if age_s < 21600.0 then "{AGES[1]}"
                              else if age_s < 86400.0 then "{AGES[2]}" else "{AGES[3]}"}}
  }})
  |> group(columns: ["age"]) |> sum() |> group()
union(tables: [none, open]) |> group(columns: ["age"]) |> sum() |> group() |> sort(columns: ["age"])'''


def open_by_domain_flux(range_: str = RANGE, bucket: str = "compliance") -> str:
    """Firing alerts per domain and kind (breach: a plan threshold; offline: a sensor fallen silent), with
    the oldest one's age in seconds: what the duty officer has open, where, since how long."""
    return f'''
import "strings"
from(bucket: "{bucket}") |> {range_}
  |> filter(fn: (r) => r._measurement == "alerts" and (r._field == "state" or r._field == "fired_at"))
  |> group(columns: ["rule", "entity", "_field"]) |> last()
  |> pivot(rowKey: ["rule", "entity", "domain"], columnKey: ["_field"], valueColumn: "_value")
  |> filter(fn: (r) => r.state == "firing" and exists r.fired_at) |> group()
  |> map(fn: (r) => ({{domain: r.domain, kind: if strings.hasSuffix(v: r.rule, suffix: ".offline") then "offline"
                       else "breach", age_s: float(v: int(v: now())) / 1000000000.0 - r.fired_at}}))
  |> group(columns: ["domain", "kind"])
  |> reduce(identity: {{open: 0, oldest_s: 0.0}},
            fn: (r, accumulator) => ({{open: accumulator.open + 1,
                                       oldest_s: if r.age_s > accumulator.oldest_s then r.age_s else accumulator.oldest_s}}))
  |> group() |> sort(columns: ["domain", "kind"])'''


def panels() -> list[Panel]:
    return [
        table("告警闭环 MTTA / MTTR per domain (s)", loop_flux(), ("domain", "alerts"), width=14, height=9,
              unit="s", description="mean time to acknowledge and to resolve the alerts fired in the range"),
        stat("未关闭告警 Open alerts by age", open_flux(), ("age", "_value"), width=10, height=9,
             thresholds=[(None, "green"), (1, "orange"), (10, "red")]),
        table("未关闭告警 Open alerts by domain: plan breaches and offline sensors", open_by_domain_flux(),
              ("domain", "kind", "open", "oldest_s"), width=24, height=8, unit="s",
              description="firing alerts per domain and kind, with the age of the oldest (seconds since it fired)"),
    ]


def dashboard() -> Dashboard:
    return Dashboard("laoshan-alert-loop", "告警闭环 Alert loop: acknowledge and resolve", panels(),
                     tags=["alerts"], time_from="now-30d", refresh="1m")


@dataclass
class LoopStats:
    """What the wall shows of the loop: per domain (alerts, MTTA s, MTTR s) and open alerts by age."""

    domains: dict[str, tuple[int, float | None, float | None]] = field(default_factory=dict)
    ages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AGES, 0))
    open: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)   # (domain, kind) -> (n, oldest s)


def loop_stats(settings: Settings) -> LoopStats:
    """The last 30 days from InfluxDB."""
    bucket, range_ = settings.influx.bucket_compliance, "range(start: -30d)"
    stats = LoopStats()
    with influx_client(settings) as client:
        api = client.query_api()
        for r in (r for t in api.query(loop_flux(range_, bucket)) for r in t.records):
            stats.domains[r.values["domain"]] = (int(r.values.get("alerts") or 0), r.values.get("mtta_s"),
                                                 r.values.get("mttr_s"))
        for r in (r for t in api.query(open_flux(range_, bucket)) for r in t.records):
            stats.ages[r.values["age"]] = int(r.get_value())
        for r in (r for t in api.query(open_by_domain_flux(range_, bucket)) for r in t.records):
            stats.open[(r.values["domain"], r.values["kind"])] = (int(r.values["open"]), float(r.values["oldest_s"]))
    return stats


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def draw(firing_ax, loop_ax, firing: int, stats: LoopStats, chinese: bool) -> None:  # noqa: ANN001 - Axes
    """The wall's two alert tiles, laid out like the target tiles (title, figure, details): the firing
    count with the open alerts per domain and kind (plan breach or offline sensor) and the oldest one's
    age, and MTTA / MTTR per domain."""
    firing_ax.set_facecolor("#8B0000" if firing else "#1E5631")
    _title(firing_ax, "当前告警", "Firing alerts", chinese)
    firing_ax.text(0.5, 0.66, str(firing), ha="center", va="center", fontsize=26, fontweight="bold", color="white",
                   transform=firing_ax.transAxes)
    by_domain = [f"{d}: {n} {kind}, oldest {_minutes(oldest)}" for (d, kind), (n, oldest) in sorted(stats.open.items())]
    shown = by_domain[:6] + ([f"... {len(by_domain) - 6} more"] if len(by_domain) > 6 else [])
    firing_ax.text(0.5, 0.50, "\n".join(shown) or "open by age: " + "  ".join(f"{a} {n}" for a, n in stats.ages.items()),
                   ha="center", va="top", fontsize=9, color="#EEEEEE", transform=firing_ax.transAxes, linespacing=1.3)
    loop_ax.set_facecolor("#24292E")
    _title(loop_ax, "告警闭环", "Alert loop (30 days): MTTA / MTTR", chinese)
    rows = [f"{d}: {n} fired, MTTA {_minutes(a)}, MTTR {_minutes(r)}" for d, (n, a, r) in sorted(stats.domains.items())]
    loop_ax.text(0.5, 0.68, "\n".join(rows) or "no alerts", ha="center", va="top", fontsize=9.5, color="#EEEEEE",
                 transform=loop_ax.transAxes, linespacing=1.35)


def _title(ax, zh: str, en: str, chinese: bool) -> None:  # noqa: ANN001 - a matplotlib Axes
    ax.text(0.5, 0.93, f"{zh}\n{en}" if chinese else en, ha="center", va="top", fontsize=12, color="white",
            transform=ax.transAxes)
