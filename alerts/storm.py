"""Storm control: many alerts of one rule firing at once become one storm alert that inhibits the
rule's per-entity notifications, Alertmanager-style, until the storm is over.

A storm starts when `storm_threshold` firing notifications of a rule are made within `storm_window`
seconds (wall time, on the partitions this router owns): subscribers get one storm notification ("20,000
alerts of fire.offline within 5 min"), and the rule's per-entity notifications (firing, reminders,
escalations, resolves) are held back and counted; acknowledgements still go out. After a whole
`storm_window` without a new firing alert of the rule the storm ends with one "resolved" storm
notification carrying the counts; the alerts themselves are tracked throughout (listed by the router's
/alerts page and the wall), and their reminders resume, grouped and bounded like any others.
"""
from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from alerts.state import Notification
from schemas.alerting import SEVERITIES


class _Rule(Protocol):
    storm_threshold: int
    storm_window: float


class _Config(Protocol):
    def rule(self, name: str) -> _Rule: ...


@dataclass
class Storm:
    """One storm under way: where it started, what it has held back."""

    rule: str
    partition: int
    started: float            # wall time (s)
    last: float               # monotonic time of its latest firing alert
    window: float
    first: dict[str, Any]     # the alert that started it (domain, target)
    severity: str = "info"
    fired: int = 0            # firing alerts of the rule in the storm: the count that started it, then each new one
    held: collections.Counter[str] = field(default_factory=collections.Counter)    # by kind
    sites: collections.Counter[str] = field(default_factory=collections.Counter)

    def note(self, kind: str, now: float) -> Notification:
        """The storm's own notification (firing when it starts, resolved when it is over)."""
        fired = self.fired
        sid = "storm-" + hashlib.sha1(f"{self.rule}|{self.started}".encode()).hexdigest()[:12]
        minutes = f"{self.window / 60:g}"
        if kind == "firing":
            en = f"Alert storm: {fired:,} alerts of {self.rule} within {minutes} min; one message per entity held back"
            zh = f"告警风暴：{minutes} 分钟内 {self.rule} 告警 {fired:,} 条，逐条通知暂停"
        else:
            en = (f"Alert storm over: {fired:,} alerts of {self.rule} fired at {len(self.sites):,} sites; "
                  f"{sum(self.held.values()):,} notifications held back")
            zh = f"告警风暴结束：{self.rule} 共 {fired:,} 条告警，{len(self.sites):,} 个站点，暂停通知 {sum(self.held.values()):,} 条"
        alert = {"rule": self.rule, "entity": "*", "domain": self.first["domain"], "site": "*",
                 "sites": [s for s, _ in self.sites.most_common(50)] or [self.first["site"]],
                 "severity": self.severity, "state": kind, "value": float(fired), "threshold": 0.0,
                 "since": int(self.started * 1e9), "last_ts": int(now * 1e9), "title_en": en, "title_zh": zh,
                 "target": self.first.get("target", ""), "id": sid, "key": f"{self.rule}/*", "storm": True,
                 "held": dict(self.held), "site_count": len(self.sites)}
        return Notification(kind, alert, f"{sid}:{kind}")   # type: ignore[arg-type]


class StormWatch:
    """Counts firing notifications per rule, starts and ends storms, and holds back what they inhibit."""

    def __init__(self, config: _Config) -> None:
        self.config = config
        self.recent: dict[str, collections.deque[float]] = {}
        self.storms: dict[str, Storm] = {}

    @property
    def active(self) -> bool:
        return bool(self.storms)

    def admit(self, partition: int, notes: list[Notification], mono: float, now: float) -> list[Notification]:
        """The notifications to send: a storm's own, and the others unless a storm of their rule inhibits them."""
        out = []
        for n in notes:
            rule = n.alert["rule"]
            storm = self.storms.get(rule)
            if n.alert.get("storm"):
                out.append(n)
                continue
            if n.kind == "firing":
                cfg = self.config.rule(rule)
                times = self.recent.setdefault(rule, collections.deque(maxlen=cfg.storm_threshold))
                times.append(mono)
                if storm is None and len(times) == cfg.storm_threshold and mono - times[0] <= cfg.storm_window:
                    storm = self.storms[rule] = Storm(rule, partition, now, mono, cfg.storm_window, n.alert,
                                                      n.alert["severity"], fired=len(times))
                    storm.sites[n.alert["site"]] += 1
                    out.append(storm.note("firing", now))
                    continue
                if storm is not None:
                    storm.last, storm.fired = mono, storm.fired + 1
                    storm.severity = max(storm.severity, n.alert["severity"], key=SEVERITIES.index)
            if storm is not None and n.kind != "acknowledged":
                storm.held[n.kind] += 1
                storm.sites[n.alert["site"]] += 1
                continue
            out.append(n)
        return out

    def ended(self, mono: float, now: float, owned: set[int]) -> list[tuple[int, Notification]]:
        """Storms a whole window without a new firing alert: over, with their closing notification (to
        the partition that started it, or another owned one; none when this router owns nothing)."""
        out = []
        for rule, storm in list(self.storms.items()):
            if mono - storm.last >= storm.window:
                del self.storms[rule]
                self.recent.pop(rule, None)
                partition = storm.partition if storm.partition in owned else min(owned, default=None)
                if partition is not None:
                    out.append((partition, storm.note("resolved", now)))
        return out

    def inhibited_total(self) -> int:
        return sum(sum(s.held.values()) for s in self.storms.values())
