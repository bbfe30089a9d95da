"""The alert router: rule observations (alerts.events) -> alert state -> subscribers, InfluxDB.

State survives a restart through the compacted topic `alerts.state`: every changed alert is written
there (key rule/entity) before its notifications go out, together with an outbox record (key
`outbox`) holding notifications not yet handed to their channels; on start the router reads the
topic to its end, rebuilds the book, and delivers what the outbox still holds. Offsets of
alerts.events are committed after that, so an observation is never applied twice to lost state.
Acknowledgements arrive as commands on alerts.events (`smartcity alerts ack`) or over MQTT
(`city/alerts/ack/<id>`, JSON {"by": ..., "comment": ...}) from field apps.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

from influxdb_client import WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from kafka import ConsumerRebalanceListener, TopicPartition
from pydantic import BaseModel, Field

from alerts.channels import Channel, Subscriber, email_delivery, mqtt_delivery, webhook_delivery
from alerts.state import AlertBook, Notification, RulePolicy, Silence
from infra.clients import influx_client, kafka_consumer, kafka_producer, mqtt_client, mqtt_connect
from infra.lineprotocol import Point
from infra.logs import event
from infra.settings import Settings
from schemas.envelope import DeadLetter

log = logging.getLogger("smartcity.alerts")


class RuleConfig(BaseModel):
    for_: float = Field(0.0, alias="for", description="seconds (event time) a breach must last before firing")
    clear_below: float | None = None
    repeat: float = 3600.0
    escalate_after: float | None = None

    def policy(self) -> RulePolicy:
        return RulePolicy(self.for_, self.clear_below, self.repeat, self.escalate_after)


class AlertConfig(BaseModel):
    """deploy/config/alerts.toml: rule policies, grouping, subscribers."""

    group_window: float = Field(0.0, ge=0, description="seconds to gather one rule's notifications into one")
    rules: dict[str, RuleConfig] = Field(default_factory=dict)
    subscriber: list[Subscriber] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "AlertConfig":
        try:
            with open(path, "rb") as fh:
                return cls.model_validate(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
            raise ValueError(f"alert config {path}: {exc}") from exc


def state_topic(settings: Settings) -> str:
    return f"{settings.kafka.topic_prefix}alerts.state"


def read_state(settings: Settings) -> dict[str, dict[str, Any]]:
    """The latest value of every key of the compacted state topic."""
    consumer = kafka_consumer(settings, None)
    topic = state_topic(settings)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    ends = consumer.end_offsets(parts)
    latest: dict[str, dict[str, Any]] = {}
    while any(consumer.position(tp) < ends[tp] for tp in parts):
        for records in consumer.poll(timeout_ms=1000).values():
            for r in records:
                key = r.key.decode()
                if r.value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = json.loads(r.value)
    consumer.close()
    return latest


class _Assigned(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    def on_partitions_assigned(self, assigned: Any) -> None:
        event(log, "partitions_assigned", partitions=len(assigned))


class AlertRouter:
    """Consumes alerts.events in a consumer group and keeps the alert book."""

    def __init__(self, settings: Settings, config: AlertConfig, *, group: str = "alert-router") -> None:
        self.settings, self.config = settings, config
        self.book = AlertBook({name: rule.policy() for name, rule in config.rules.items()})
        self.producer = kafka_producer(settings, linger_ms=0)
        # A short session: a router that died is replaced quickly (its partitions are held until then).
        self.consumer = kafka_consumer(settings, group, max_poll_records=1000, session_timeout_ms=6000,
                                       heartbeat_interval_ms=1500)
        self.consumer.subscribe([settings.kafka.alerts_topic], listener=_Assigned())
        self.influx = influx_client(settings)
        self.writer = self.influx.write_api(write_options=SYNCHRONOUS)
        self.mqtt = mqtt_client(settings, f"alert-router-{uuid.uuid4().hex[:6]}", username="router")
        self.acks: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.mqtt.on_message = self._on_ack
        self.mqtt.on_connect = lambda c, u, f, rc, p: c.subscribe("city/alerts/ack/+", qos=1)
        self.channels = [Channel(sub, self._delivery(sub), self._dead_letter) for sub in config.subscriber]
        self.grouped: dict[tuple[int, str, str], tuple[float, list[dict[str, Any]]]] = {}
        self.stopping = threading.Event()
        self.sent = 0

    def _delivery(self, sub: Subscriber):  # noqa: ANN202
        if sub.channel == "mqtt":
            return mqtt_delivery(sub, self.mqtt)
        if sub.channel == "webhook":
            return webhook_delivery(sub)
        return email_delivery(sub)

    def _on_ack(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload or b"{}")
        except ValueError:
            body = {}
        self.acks.put((msg.topic.rsplit("/", 1)[-1], body if isinstance(body, dict) else {}))

    # -- state --------------------------------------------------------------------------------

    def restore(self) -> None:
        """Rebuild the book from alerts.state and deliver what the outbox still held."""
        from alerts.state import Alert

        latest = read_state(self.settings)
        for key, value in latest.items():
            if key.startswith("silence/"):
                self.book.silence(Silence(**value))
            elif key != "outbox":
                self.book.alerts[key] = Alert.from_dict(value)
        outbox = [Notification(n["kind"], n["alert"]) for n in latest.get("outbox", {}).get("items", [])]
        event(log, "restored", alerts=len(self.book.alerts), silences=len(self.book.silences), outbox=len(outbox))
        if outbox:
            self._dispatch(outbox, immediate=True)
            self._save({"outbox": {"items": []}})

    def _save(self, records: dict[str, dict[str, Any] | None]) -> None:
        topic = state_topic(self.settings)
        for key, value in records.items():
            self.producer.send(topic, key=key.encode(), value=None if value is None else
                               json.dumps(value, ensure_ascii=False).encode())
        self.producer.flush(60)

    # -- loop -----------------------------------------------------------------------------------

    def run(self) -> None:
        mqtt_connect(self.mqtt, self.settings)
        self.mqtt.loop_start()
        self.restore()
        try:
            while not self.stopping.is_set():
                polled = self.consumer.poll(timeout_ms=100)
                changes: list[tuple[Any, list[Notification]]] = []
                now = time.time()
                for records in polled.values():
                    for r in records:
                        changes.extend(self._apply(json.loads(r.value), now))
                while not self.acks.empty():
                    alert_id, body = self.acks.get()
                    changes.append(self.book.acknowledge(alert_id, str(body.get("by", "field-app")),
                                                         str(body.get("comment", "")), now))
                changes.extend(self.book.tick(now))
                self._commit_changes([c for c in changes if c[0] is not None])
                if polled:
                    self.consumer.commit()
                self._flush_groups(now)
        finally:
            self._flush_groups(float("inf"))
            for ch in self.channels:
                ch.close()
            self.consumer.close(autocommit=False)
            self.producer.close(10)
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
            self.influx.close()
            event(log, "router_stopped", notifications=self.sent)

    def stop(self) -> None:
        self.stopping.set()

    def _apply(self, value: dict[str, Any], now: float) -> list[tuple[Any, list[Notification]]]:
        kind = value.get("type")
        if kind == "ack":
            return [self.book.acknowledge(value["id"], value.get("by", ""), value.get("comment", ""), now)]
        if kind == "silence":
            silence = Silence(value["id"], value["matchers"], value["start"], value["end"], value.get("by", ""),
                              value.get("comment", ""))
            self.book.silence(silence)
            self._save({f"silence/{silence.id}": silence.__dict__})
            return []
        return [self.book.observe(value, now)]

    def _commit_changes(self, changes: list[tuple[Any, list[Notification]]]) -> None:
        """Persist changed alerts and the outbox, record state changes in InfluxDB, then dispatch."""
        if not changes:
            return
        notes = [n for _, ns in changes for n in ns]
        records: dict[str, dict[str, Any] | None] = {a.key: a.to_dict() for a, _ in changes}
        if notes:
            records["outbox"] = {"items": [{"kind": n.kind, "alert": n.alert} for n in notes]}
        self._save(records)
        self._record(changes)
        if notes:
            self._dispatch(notes)
            self._save({"outbox": {"items": []}})

    def _record(self, changes: list[tuple[Any, list[Notification]]]) -> None:
        now = time.time_ns()
        lines = []
        for i, (a, notes) in enumerate(changes):
            kind = notes[0].kind if notes else a.state
            lines.append(Point("alerts", {"rule": a.rule, "domain": a.domain, "site": a.site, "entity": a.entity}, {
                "state": a.state, "kind": kind, "severity": a.severity, "value": float(a.value),
                "threshold": float(a.threshold), "alert_id": a.id, "acked": int(a.acked_at is not None),
                "acked_by": a.acked_by or "", "title_en": a.title_en, "title_zh": a.title_zh}, now + i).line())
        try:
            self.writer.write(self.settings.influx.bucket_compliance, record=lines, write_precision=WritePrecision.NS)
        except Exception as exc:  # noqa: BLE001 - the wall's history must not stop notifications
            event(log, "influx_write_failed", logging.WARNING, error=str(exc)[:200])

    def _dispatch(self, notes: list[Notification], immediate: bool = False) -> None:
        for n in notes:
            for i, ch in enumerate(self.channels):
                if not ch.sub.wants(n):
                    continue
                if self.config.group_window <= 0 or immediate:
                    ch.send(n.kind, [n.alert])
                    self.sent += 1
                    continue
                key = (i, n.alert["rule"], n.kind)
                first, items = self.grouped.get(key, (time.time(), []))
                self.grouped[key] = (first, items + [n.alert])

    def _flush_groups(self, now: float) -> None:
        for key in [k for k, (first, _) in self.grouped.items() if now - first >= self.config.group_window]:
            _, items = self.grouped.pop(key)
            self.channels[key[0]].send(key[2], items)
            self.sent += 1

    def _dead_letter(self, sub: Subscriber, body: bytes, reason: str) -> None:
        record = DeadLetter.of(f"alerts/{sub.channel}/{sub.name}", body, f"delivery to {sub.name} failed: {reason}")
        self.producer.send(self.settings.kafka.deadletter_topic, key=sub.name.encode(),
                           value=record.model_dump_json().encode())
        self.producer.flush(30)
