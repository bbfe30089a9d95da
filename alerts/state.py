"""Alert state: a breach is an event, an alert is state (docs/architecture.md, Alerts).

One alert per (rule, entity): pending -> firing -> resolved, or pending -> cleared when a breach ends
before its `for` duration; every transition is returned so the router persists it. Hysteresis
(resolve only below `clear_below`), reminders every `repeat` while firing and unacknowledged (after
an outage at most one catch-up reminder, saying how many were missed), severity escalation,
acknowledgement (who, when, comment) and silences that mute notifications without changing state.
Pure: wall time is passed in.

Ids: `<8 hex of the key's Kafka partition hash><4 hex of its sha1>-<episode>`. The episode grows
with every new pending alert of the key and is persisted, so ids are never reused; the hash lets
anyone holding an id (CLI, field app, ack link) send the acknowledgement to the partition that owns
the alert, in order with the observations of that alert.
"""
from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from kafka.partitioner.default import murmur2

from schemas.alerting import SEVERITIES, Kind

MAX_ACK_HISTORY = 20   # later acknowledgements of one alert kept for the audit (the first one wins)
ID_PATTERN = re.compile(r"^([0-9a-f]{8})[0-9a-f]{4}-[1-9][0-9]{0,9}$")


def key_hash(key: str) -> int:
    """The hash Kafka's default partitioner gives the record key `key` (murmur2, positive)."""
    return murmur2(key.encode()) & 0x7FFFFFFF


def alert_id(key: str, episode: int) -> str:
    """The id of episode `episode` of the alert with key `<rule>/<entity>`."""
    return f"{key_hash(key):08x}{hashlib.sha1(key.encode()).hexdigest()[:4]}-{episode}"


def id_partition(alert_id_: str, partitions: int) -> int:
    """The alerts.events partition that owns alert `alert_id_` (where its observations arrive)."""
    match = ID_PATTERN.match(alert_id_)
    if match is None:
        raise ValueError(f"{alert_id_!r} is not an alert id (like 1a2b3c4d5e6f-3): copy it from the "
                         "notification or `smartcity alerts list`")
    return int(match.group(1), 16) % partitions


@dataclass(frozen=True)
class RulePolicy:
    """How a rule's alerts behave (deploy/config/alerts.toml, [rules.<name>])."""

    for_s: float = 0.0                # breach must last this long (event time) before firing
    clear_below: float | None = None  # resolve only when the value drops below this (None: when not breached)
    repeat_s: float = 3600.0          # reminder interval while firing and unacknowledged (wall time)
    escalate_after_s: float | None = None  # raise severity one step per this long unacknowledged


@dataclass
class Alert:
    """The state of one (rule, entity)."""

    rule: str
    entity: str
    domain: str
    site: str
    severity: str
    state: str                       # pending | firing | resolved | cleared (pending that recovered)
    value: float
    threshold: float
    since: int                       # event time (ns) of the first breach of this episode
    last_ts: int                     # event time (ns) of the latest observation applied
    title_en: str = ""
    title_zh: str = ""
    target: str = ""
    episode: int = 1
    seq: int = 0                     # notifications made for this key so far (idempotency keys)
    offset: int = -1                 # alerts.events offset of the last record applied (replay guard)
    fired_at: float | None = None    # wall time (s)
    last_notified: float | None = None
    missed_reminders: int = 0        # reminders skipped (router down) before the latest one
    escalations: int = 0
    acked_by: str | None = None
    acked_at: float | None = None
    ack_comment: str | None = None
    resolved_at: float | None = None
    resolve_note: str | None = None
    ack_history: list[dict[str, Any]] = field(default_factory=list)   # later acks: by, at, comment, source

    @property
    def key(self) -> str:
        return f"{self.rule}/{self.entity}"

    @property
    def id(self) -> str:
        """Id of this alert episode (what `smartcity alerts ack ID` takes)."""
        return alert_id(self.key, self.episode)

    @property
    def open(self) -> bool:
        return self.state == "firing"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id, "key": self.key}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Alert":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Notification:
    """Something to tell subscribers about one alert; `key` (alert id, transition, sequence) is the
    idempotency key every channel carries, so that subscribers can drop duplicates."""

    kind: Kind
    alert: dict[str, Any]
    key: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "alert": self.alert, "key": self.key}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Notification":
        return cls(d["kind"], d["alert"], d["key"])


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


Change = tuple[Alert | None, list[Notification]]


@dataclass
class AlertBook:
    """The alerts and silences of one partition, and the transitions; returns what to persist and notify."""

    policies: dict[str, RulePolicy] = field(default_factory=dict)
    alerts: dict[str, Alert] = field(default_factory=dict)
    silences: dict[str, Silence] = field(default_factory=dict)

    def policy(self, rule: str) -> RulePolicy:
        return self.policies.get(rule) or self.policies.get("*") or RulePolicy()

    def observe(self, obs: dict[str, Any], now: float) -> Change:
        """Apply one rule observation (processors' `alerts.events` record); returns the changed alert."""
        key = f"{obs['rule']}/{obs['entity']}"
        alert = self.alerts.get(key)
        pol = self.policy(obs["rule"])
        ts, breach, value = int(obs["ts"]), bool(obs["breach"]), float(obs["value"])
        if alert is not None and ts < alert.last_ts:
            return None, []  # older than what we know: a late copy of a superseded window
        if alert is None or alert.state in ("resolved", "cleared"):
            if not breach:
                return None, []
            alert = Alert(obs["rule"], obs["entity"], obs["domain"], obs["site"], obs["severity"], "pending",
                          value, float(obs["threshold"]), ts, ts, obs.get("title_en", ""), obs.get("title_zh", ""),
                          obs.get("target", ""), episode=alert.episode + 1 if alert else max(int(now), 1),
                          seq=alert.seq if alert else 0, offset=alert.offset if alert else -1)
            self.alerts[key] = alert
        alert.value, alert.last_ts = value, ts
        if alert.state == "pending":
            if not breach:
                alert.state, alert.resolved_at = "cleared", now   # persisted: the next breach waits `for` again
                return alert, []
            if ts - alert.since >= pol.for_s * 1e9:
                alert.state, alert.fired_at, alert.last_notified = "firing", now, now
                return alert, self._notify("firing", alert, now)
            return alert, []
        cleared = value < pol.clear_below if pol.clear_below is not None else not breach
        if cleared:
            alert.state, alert.resolved_at = "resolved", now
            return alert, self._notify("resolved", alert, now)
        return alert, []

    def tick(self, now: float) -> list[Change]:
        """Wall-clock duties of firing, unacknowledged alerts: escalation, else a reminder when one is
        due. However long the router was away, one notification catches up (with the count missed)."""
        changed: list[Change] = []
        for alert in self.alerts.values():
            if alert.state != "firing" or alert.acked_at is not None or alert.fired_at is None:
                continue
            pol = self.policy(alert.rule)
            due = int((now - alert.fired_at) // pol.escalate_after_s) if pol.escalate_after_s else 0
            if due > alert.escalations:
                level = min(SEVERITIES.index(alert.severity) + due - alert.escalations, len(SEVERITIES) - 1)
                alert.escalations, alert.severity, alert.last_notified = due, SEVERITIES[level], now
                changed.append((alert, self._notify("escalated", alert, now)))
                continue
            last = alert.last_notified or alert.fired_at
            if now - last >= pol.repeat_s:
                intervals = int((now - last) // pol.repeat_s)
                alert.missed_reminders = intervals - 1
                alert.last_notified = last + intervals * pol.repeat_s
                changed.append((alert, self._notify("reminder", alert, now)))
        return changed

    def find(self, alert_id_: str) -> Alert | None:
        return next((a for a in self.alerts.values() if a.id == alert_id_), None)

    def acknowledge(self, alert_id_: str, by: str, comment: str, at: float, source: str = "cli") -> Change:
        """Acknowledge (or annotate a resolved) alert by id; no reminders after this. The first
        acknowledgement wins: later ones are kept in `ack_history` (bounded) and notify nobody, and the
        same acknowledgement repeated (several intakes forwarded it) changes nothing. `at` is the
        intake's receive time, kept within [fire time, ...]."""
        alert = self.find(alert_id_)
        if alert is None or (alert.acked_by == by and alert.ack_comment == comment):
            return None, []
        at = max(at, alert.fired_at or at)
        if alert.acked_at is not None:
            entry = {"by": by, "at": at, "comment": comment, "source": source}
            if entry in alert.ack_history:
                return None, []
            alert.ack_history = (alert.ack_history + [entry])[-MAX_ACK_HISTORY:]
            if alert.state == "resolved" and comment:
                alert.resolve_note = comment
            return alert, []
        if alert.state == "resolved":
            alert.resolve_note = comment
        alert.acked_at, alert.acked_by, alert.ack_comment = at, by, comment
        return alert, self._notify("acknowledged", alert, at)

    def compact(self, now: float, keep_s: float) -> list[str]:
        """Forget resolved and cleared alerts older than `keep_s` (their keys, for tombstones): the book's
        memory is bounded by the alerts still open plus a retention of closed ones. A key seen again
        starts an episode numbered by the wall clock, so ids are not reused."""
        old = [k for k, a in self.alerts.items() if a.state in ("resolved", "cleared")
               and a.resolved_at is not None and now - a.resolved_at >= keep_s]
        for k in old:
            del self.alerts[k]
        return old

    def silence(self, silence: Silence) -> None:
        self.silences[silence.id] = silence

    def _notify(self, kind: Kind, alert: Alert, now: float) -> list[Notification]:
        if any(s.mutes(alert, now) for s in self.silences.values()):
            return []
        alert.seq += 1
        return [Notification(kind, alert.to_dict(), f"{alert.id}:{kind}:{alert.seq}")]
