"""The demo's proof: a scenario's expected alerts (its manifest) against what the router did.

Pure: it takes the expectations (simulators/scenarios.py `Expected`, as dicts) and what the demo's
subscribers received per alert episode (`Seen`), and says per domain how many alerts were expected,
fired, delivered on every channel their subscribers chose, acknowledged and resolved, with MTTA /
MTTR, and every discrepancy in words: missing, fired too early or too late (a `for` that differs),
resolved too early (hysteresis), not delivered on a channel, or fired without an episode to explain it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from statistics import mean
from typing import Any, Callable

LOCAL = dt.timezone(dt.timedelta(hours=8))


@dataclass
class Seen:
    """One alert episode as the subscribers saw it: which kinds of notification reached which channel."""

    id: str
    rule: str
    entity: str
    domain: str
    fired_ts: int | None = None      # event time of the window whose observation fired it (ns)
    resolved_ts: int | None = None   # event time of the window whose observation resolved it (ns)
    fired_at: float | None = None    # wall time (s), from the alert
    acked_at: float | None = None
    resolved_at: float | None = None
    kinds: dict[str, set[str]] = field(default_factory=dict)   # kind -> channels it arrived on

    def note(self, kind: str, channel: str, alert: dict[str, Any]) -> None:
        """Record a notification of this episode (`alert`: the alert as the message carried it)."""
        self.kinds.setdefault(kind, set()).add(channel)
        if kind == "firing" and self.fired_ts is None:
            self.fired_ts = int(alert["last_ts"])
        if kind == "resolved" and self.resolved_ts is None:
            self.resolved_ts = int(alert["last_ts"])
        for name in ("fired_at", "acked_at", "resolved_at"):
            if alert.get(name) is not None:
                setattr(self, name, float(alert[name]))


@dataclass
class DomainRow:
    expected: int = 0
    fired: int = 0
    delivered: int = 0
    acknowledged: int = 0
    resolved: int = 0
    tta: list[float] = field(default_factory=list)
    ttr: list[float] = field(default_factory=list)

    def mtta(self) -> float | None:
        return mean(self.tta) if self.tta else None

    def mttr(self) -> float | None:
        return mean(self.ttr) if self.ttr else None


def group(rule: str) -> str:
    """What kind of alert a rule raises: a sensor gone silent (`<domain>.offline`) or a plan breach."""
    return "offline" if rule.endswith(".offline") else "breach"


@dataclass
class Verdict:
    rows: dict[tuple[str, str], DomainRow]   # (domain, group) -> counts
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def when(ns: int | None) -> str:
    return "-" if ns is None else dt.datetime.fromtimestamp(ns / 1e9, LOCAL).strftime("%m-%d %H:%M")


def check(expected: list[dict[str, Any]], seen: list[Seen], wanted: Callable[[Seen], set[str]]) -> Verdict:
    """Match each expectation to the first episode of its (rule, entity) that fired in its window;
    `wanted(seen)` is the set of channels whose subscribers chose that alert."""
    rows: dict[tuple[str, str], DomainRow] = {}
    problems: list[str] = []
    unmatched = sorted(seen, key=lambda s: (s.fired_ts or 0, s.id))
    for x in expected:
        row = rows.setdefault((x["domain"], group(x["rule"])), DomainRow())
        row.expected += 1
        name = f"{x['rule']} {x['entity']} ({x['episode']})"
        same = [s for s in unmatched if (s.rule, s.entity) == (x["rule"], x["entity"]) and "firing" in s.kinds]
        inside = [s for s in same if x["earliest"] is None or x["earliest"] <= (s.fired_ts or 0) <= x["latest"]]
        if not inside:
            times = ", ".join(when(s.fired_ts) for s in same)
            problems.append(f"{name}: expected to fire between {when(x['earliest'])} and {when(x['latest'])}, "
                            + (f"fired at {times} (is the rule's `for` as the manifest says?)" if same else "never fired"))
            continue
        s = inside[0]
        unmatched.remove(s)
        row.fired += 1
        channels = wanted(s)
        missing = {k: sorted(channels - s.kinds.get(k, set())) for k in ("firing", "acknowledged", "resolved")}
        if not missing["firing"]:
            row.delivered += 1
        else:
            problems.append(f"{name}: firing not delivered on {', '.join(missing['firing'])}")
        if "acknowledged" in s.kinds and not missing["acknowledged"]:
            row.acknowledged += 1
            if s.acked_at is not None and s.fired_at is not None:
                row.tta.append(max(s.acked_at - s.fired_at, 0.0))
        else:
            problems.append(f"{name}: not acknowledged" + (f" on {', '.join(missing['acknowledged'])}"
                                                           if "acknowledged" in s.kinds else ""))
        if "resolved" not in s.kinds or missing["resolved"]:
            problems.append(f"{name}: not resolved" + (f" on {', '.join(missing['resolved'])}"
                                                       if "resolved" in s.kinds else ""))
        elif x.get("resolves_after") is not None and (s.resolved_ts or 0) < x["resolves_after"]:
            problems.append(f"{name}: resolved at {when(s.resolved_ts)}, not before {when(x['resolves_after'])} "
                            "expected (is the rule's clear_below as the manifest says?)")
        else:
            row.resolved += 1
            if s.resolved_at is not None and s.fired_at is not None:
                row.ttr.append(max(s.resolved_at - s.fired_at, 0.0))
    for s in unmatched:
        if "firing" in s.kinds:
            rows.setdefault((s.domain, group(s.rule)), DomainRow())
            problems.append(f"{s.rule} {s.entity}: fired at {when(s.fired_ts)} (alert {s.id}) but no episode of "
                            "the scenario explains it")
    return Verdict(rows, problems)
