"""Alert state: a breach is an event, an alert is state (DESIGN.md, Alerts).

One alert per (rule, entity): pending -> firing -> resolved, with a `for` duration (event time),
hysteresis (resolve only below `clear_below`), reminders every `repeat` while firing and not
acknowledged, severity escalation when unacknowledged too long, acknowledgement (who, when, comment),
and silences that mute notifications without changing state. Pure: wall time is passed in.
"""
from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

SEVERITIES = ("info", "minor", "major", "critical")
Kind = Literal["firing", "reminder", "escalated", "resolved", "acknowledged"]


@dataclass(frozen=True)
class RulePolicy:
    """How a rule's alerts behave (deploy/config/alerts.toml, [rules.<name>])."""

    for_s: float = 0.0                # breach must last this long (event time) before firing
    clear_below: float | None = None  # resolve only when the value drops below this (None: when not breached)
    repeat_s: float = 3600.0          # reminder interval while firing and unacknowledged (wall time)
    escalate_after_s: float | None = None  # raise severity one step when unacknowledged this long


@dataclass
class Alert:
    """The state of one (rule, entity)."""

    rule: str
    entity: str
    domain: str
    site: str
    severity: str
    state: str                       # pending | firing | resolved
    value: float
    threshold: float
    since: int                       # event time (ns) of the first breach of this episode
    last_ts: int                     # event time (ns) of the latest observation applied
    title_en: str = ""
    title_zh: str = ""
    target: str = ""
    episode: int = 1
    fired_at: float | None = None    # wall time (s)
    last_notified: float | None = None
    escalations: int = 0
    acked_by: str | None = None
    acked_at: float | None = None
    ack_comment: str | None = None
    resolved_at: float | None = None
    resolve_note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.rule}/{self.entity}"

    @property
    def id(self) -> str:
        """Short stable id of this alert episode (what `smartcity alerts ack ID` takes)."""
        return hashlib.sha1(f"{self.key}#{self.episode}".encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id, "key": self.key}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Alert":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Notification:
    """Something to tell subscribers about one alert."""

    kind: Kind
    alert: dict[str, Any]


@dataclass
class Silence:
    """Mutes notifications of alerts whose labels match every matcher (glob), between start and end."""

    id: str
    matchers: dict[str, str]
    start: float
    end: float
    created_by: str = ""
    comment: str = ""

    def mutes(self, alert: Alert, now: float) -> bool:
        if not self.start <= now < self.end:
            return False
        labels = {"rule": alert.rule, "entity": alert.entity, "domain": alert.domain, "site": alert.site,
                  "severity": alert.severity}
        return all(fnmatch.fnmatchcase(str(labels.get(k, "")), v) for k, v in self.matchers.items())


@dataclass
class AlertBook:
    """All alerts and silences, and the transitions; returns what to notify."""

    policies: dict[str, RulePolicy] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    silences: dict[str, Silence] = field(default_factory=dict)

    def policy(self, rule: str) -> RulePolicy:
        return self.policies.get(rule) or self.policies.get("*") or RulePolicy()

    def observe(self, obs: dict[str, Any], now: float) -> tuple[Alert | None, list[Notification]]:
        """Apply one rule observation (processors' `alerts.events` record); returns the changed alert."""
        key = f"{obs['rule']}/{obs['entity']}"
        alert = self.alerts.get(key)
        pol = self.policy(obs["rule"])
        ts, breach, value = int(obs["ts"]), bool(obs["breach"]), float(obs["value"])
        if alert is not None and ts < alert.last_ts:
            return None, []  # older than what we know: a late copy of a superseded window
        if alert is None or alert.state == "resolved":
            if not breach:
                return None, []
            episode = alert.episode + 1 if alert else 1
            alert = Alert(obs["rule"], obs["entity"], obs["domain"], obs["site"], obs["severity"], "pending",
                          value, float(obs["threshold"]), ts, ts, obs.get("title_en", ""), obs.get("title_zh", ""),
                          obs.get("target", ""), episode=episode)
            self.alerts[key] = alert
        alert.value, alert.last_ts = value, ts
        if alert.state == "pending":
            if not breach:
                del self.alerts[key]
                return None, []
            if ts - alert.since >= pol.for_s * 1e9:
                alert.state, alert.fired_at, alert.last_notified = "firing", now, now
                return alert, self._notify("firing", alert, now)
            return alert, []
        # firing
        clear = pol.clear_below if pol.clear_below is not None else None
        cleared = (value < clear) if clear is not None else not breach
        if cleared:
            alert.state, alert.resolved_at = "resolved", now
            return alert, self._notify("resolved", alert, now)
        return alert, []

    def tick(self, now: float) -> list[tuple[Alert, list[Notification]]]:
        """Wall-clock duties: reminders and escalations of firing, unacknowledged alerts."""
        changed = []
        for alert in self.alerts.values():
            if alert.state != "firing" or alert.acked_at is not None or alert.fired_at is None:
                continue
            pol = self.policy(alert.rule)
            if pol.escalate_after_s and now - alert.fired_at >= pol.escalate_after_s * (alert.escalations + 1):
                alert.escalations += 1
                level = min(SEVERITIES.index(alert.severity) + 1, len(SEVERITIES) - 1)
                alert.severity = SEVERITIES[level]
                alert.last_notified = now
                changed.append((alert, self._notify("escalated", alert, now)))
            elif now - (alert.last_notified or alert.fired_at) >= pol.repeat_s:
                alert.last_notified = (alert.last_notified or alert.fired_at) + pol.repeat_s
                changed.append((alert, self._notify("reminder", alert, now)))
        return changed

    def acknowledge(self, alert_id: str, by: str, comment: str, now: float) -> tuple[Alert | None, list[Notification]]:
        """Acknowledge (or annotate a resolved) alert by id; no reminders after this."""
        alert = next((a for a in self.alerts.values() if a.id == alert_id), None)
        if alert is None:
            return None, []
        if alert.state == "resolved":
            alert.resolve_note = comment
        alert.acked_by, alert.acked_at, alert.ack_comment = by, now, comment
        return alert, self._notify("acknowledged", alert, now)

    def silence(self, silence: Silence) -> None:
        self.silences[silence.id] = silence

    def _notify(self, kind: Kind, alert: Alert, now: float) -> list[Notification]:
        if any(s.mutes(alert, now) for s in self.silences.values()):
            return []
        return [Notification(kind, alert.to_dict())]
