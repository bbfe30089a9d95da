"""The alert router: rule observations (alerts.events) -> alert state -> outbox -> subscribers, InfluxDB.

Ownership. Routers share alerts.events in one consumer group; a router owns the alerts of the
partitions it is assigned. An alert's state is written to the same partition number of the compacted
topic alerts.state (key `<rule>/<entity>`), so on assignment a router reads exactly the state of the
partitions it gained, and on revocation it drops theirs. Acknowledgements and silences travel on
alerts.events too: an ack to the partition its alert id names (so it is applied in order with the
alert's observations), a silence to every partition.

The step (`step`), in order: poll; apply records and wall-clock duties to the books; write the changed
alerts AND an outbox record per (subscriber, notification) to alerts.state and wait until Kafka
confirmed them; only then hand the notifications to the channels (directly or through the grouping
window) and commit the consumed offsets. A channel reports a notification done only when its receiver confirmed
it or its dead letter is in Kafka; then the outbox record is deleted (a tombstone, also confirmed).
A crash anywhere leaves the outbox record, and whoever owns the partition next delivers it again with
the same idempotency key: at-least-once. Each alert remembers the alerts.events offset it last
applied, so records replayed after a crash are not applied twice.

Field apps acknowledge on MQTT (`ack/alerts/<id>`, persistent session, acknowledged to the broker only
after the command is in Kafka); people acknowledge with signed links served by this router's HTTP
port (see ackserver), and operators with `smartcity alerts ack`.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any, Callable, TypeVar

from kafka import ConsumerRebalanceListener, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewPartitions
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel, Field

from alerts.ackserver import RouterHTTP, sign_link
from alerts.channels import ACK_TOPIC, TRANSPORTS, Channel, Delivery, Shape, Subscriber, secret_path
from alerts.state import Alert, AlertBook, Change, Notification, RulePolicy, Silence, id_partition, key_hash
from alerts.storm import StormWatch
from infra.clients import (
    RebalanceWatch,
    kafka_consumer,
    kafka_producer,
    mqtt_client,
    mqtt_connect,
    subscribe_when_known,
)
from infra.influxwrite import REFUSED, InfluxWriteError, InfluxWriter
from infra.lineprotocol import Point
from infra.logs import event
from infra.settings import Settings
from schemas.alerting import (
    AckCommand,
    EventRejected,
    Observation,
    SilenceCommand,
    parse_event,
    parse_field_ack,
    valid_alert_id,
)
from schemas.envelope import DeadLetter

log = logging.getLogger("smartcity.alerts")
T = TypeVar("T")
MAX_INFLUX_BACKLOG = 100_000


class RuleConfig(BaseModel):
    for_: float = Field(0.0, alias="for", description="seconds (event time) a breach must last before firing")
    clear_below: float | None = None
    repeat: float = Field(3600.0, gt=0)
    escalate_after: float | None = Field(None, gt=0)
    max_entities: int = Field(20, ge=1, description="alerts listed in one notification; the rest are counted")
    storm_threshold: int = Field(500, ge=2, description="firing alerts of the rule within storm_window that make "
                                 "a storm: one storm alert, and the rule's per-entity notifications held back")
    storm_window: float = Field(300.0, gt=0, description="seconds (wall time) of the storm count; a storm ends "
                                "after this long without a new firing alert of the rule")

    def policy(self) -> RulePolicy:
        return RulePolicy(self.for_, self.clear_below, self.repeat, self.escalate_after)


class AlertConfig(BaseModel):
    """deploy/config/alerts.toml: rule policies, grouping, acknowledge links, subscribers."""

    group_window: float = Field(0.0, ge=0, description="seconds to gather one rule's notifications into one")
    link_base: str = Field("http://127.0.0.1:9311", description="this router's HTTP port as people reach it")
    link_ttl: float = Field(7 * 86400, gt=0, description="seconds an acknowledge link stays valid")
    link_key_env: str | None = Field("SMARTCITY_ALERTS_LINK_KEY", description="HMAC key of ack links: env ...")
    link_key_file: Path | None = Field(Path("alerts-link-key"), description="... or file (relative: .stack/secrets/)")
    keep_resolved: float = Field(86400.0, gt=0, description="seconds a resolved or cleared alert is kept, then "
                                 "compacted away (memory is bounded by the alerts kept)")
    rules: dict[str, RuleConfig] = Field(default_factory=dict)
    subscriber: list[Subscriber] = Field(default_factory=list)

    def rule(self, name: str) -> RuleConfig:
        """The rule's configuration, else that of "*", else the defaults."""
        return self.rules.get(name) or self.rules.get("*") or RuleConfig()

    @classmethod
    def load(cls, path: Path) -> "AlertConfig":
        try:
            with open(path, "rb") as fh:
                return cls.model_validate(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
            raise ValueError(f"alert config {path}: {exc}") from exc

    def link_key(self) -> bytes | None:
        if self.link_key_env and os.environ.get(self.link_key_env):
            return os.environ[self.link_key_env].encode()
        if self.link_key_file and secret_path(self.link_key_file).is_file():
            return secret_path(self.link_key_file).read_bytes().strip() or None
        return None

    def problems(self) -> list[str]:
        """Everything that stops a subscriber or a feature from working, each with what to do."""
        out = [p for sub in self.subscriber for p in sub.problems()]
        names = [s.name for s in self.subscriber]
        out += [f"subscriber name {n!r} is used twice; names must be unique" for n in sorted(set(names))
                if names.count(n) > 1]
        if self.link_key() is None:
            where = " or ".join(filter(None, [self.link_key_env and f"set ${self.link_key_env}", self.link_key_file
                                              and f"create {secret_path(self.link_key_file)} (deploy/native/up does)"]))
            out.append(f"no acknowledge-link key: e-mail and webhook messages go out without links; {where}")
        return out


def default_config_path() -> Path:
    """$SMARTCITY_ALERTS_CONFIG, else deploy/config/alerts.toml under the current directory (a checkout)."""
    return Path(os.environ.get("SMARTCITY_ALERTS_CONFIG") or Path.cwd() / "deploy" / "config" / "alerts.toml")


def state_topic(settings: Settings) -> str:
    return f"{settings.kafka.topic_prefix}alerts.state"


def outbox_key(subscriber: str, note: Notification) -> str:
    return f"outbox/{subscriber}/{note.key}"


def read_state(settings: Settings, partitions: list[int] | None = None,
               stopping: threading.Event | None = None) -> dict[int, dict[str, dict[str, Any]]]:
    """The latest value of every key of alerts.state, per partition (all, or those given)."""
    consumer = kafka_consumer(settings, None)
    topic = state_topic(settings)
    try:
        chosen = sorted(consumer.partitions_for_topic(topic) or []) if partitions is None else partitions
        parts = [TopicPartition(topic, p) for p in chosen]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        latest: dict[int, dict[str, dict[str, Any]]] = {p: {} for p in chosen}
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            if stopping is not None and stopping.is_set():
                raise _Stopped()
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for r in records:
                    if r.value is None:
                        latest[tp.partition].pop(r.key.decode(), None)
                    else:
                        latest[tp.partition][r.key.decode()] = json.loads(r.value)
        return latest
    finally:
        consumer.close()


def alerts_in(state: dict[int, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The alert records of a read_state result (not silences, not outbox records)."""
    return [v for records in state.values() for k, v in records.items()
            if not k.startswith(("silence/", "outbox/")) and "rule" in v]


def events_partitions(producer: KafkaProducer, settings: Settings) -> int:
    return len(producer.partitions_for(settings.kafka.alerts_topic))


def ack_command(alert_id: str, by: str, comment: str, source: str, at: float | None = None) -> dict[str, Any]:
    """The alerts.events record that acknowledges `alert_id` (who, when the intake received it, comment,
    and through what); validated against its contract before it is sent."""
    return AckCommand(type="ack", id=alert_id, by=by, comment=comment, source=source,
                      at=time.time() if at is None else at).model_dump()


def send_ack(producer: KafkaProducer, settings: Settings, alert_id: str, by: str, comment: str, source: str,
             at: float | None = None) -> None:
    """Produce an acknowledgement to the partition that owns the alert, and wait until Kafka has it."""
    partition = id_partition(alert_id, events_partitions(producer, settings))
    producer.send(settings.kafka.alerts_topic, key=f"ack/{alert_id}".encode(), partition=partition,
                  value=json.dumps(ack_command(alert_id, by, comment, source, at), ensure_ascii=False).encode()
                  ).get(timeout=30)


def send_silence(producer: KafkaProducer, settings: Settings, silence: Silence) -> None:
    """Produce a silence to every alerts.events partition (each owner applies it in order), confirmed."""
    body = json.dumps({"type": "silence", **silence.__dict__}, ensure_ascii=False).encode()
    futures = [producer.send(settings.kafka.alerts_topic, key=f"silence/{silence.id}".encode(), value=body,
                             partition=p) for p in range(events_partitions(producer, settings))]
    for f in futures:
        f.get(timeout=30)


class _Stopped(Exception):
    """stop() was called while waiting for a service: leave without committing."""


class RouterMetrics:
    """Prometheus metrics of one router (own registry)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        sub = ["subscriber", "channel"]
        self.records = Counter("alerts_records", "alerts.events records applied", ["type"], registry=r)
        self.rejected = Counter("alerts_records_rejected", "alerts.events records and commands dead-lettered "
                                "(invalid: failed their contract; error: failed while applied)", ["reason"], registry=r)
        self.transitions = Counter("alerts_notifications_made", "notifications made, by kind", ["kind"], registry=r)
        self.delivered = Counter("alerts_delivered", "notifications confirmed by the receiver", sub, registry=r)
        self.deadlettered = Counter("alerts_deadlettered", "notifications dead-lettered after the last try", sub,
                                    registry=r)
        self.retries = Counter("alerts_delivery_retries", "delivery attempts that failed and were retried", sub,
                               registry=r)
        self.latency = Histogram("alerts_delivery_seconds", "time from first attempt to confirmation", sub,
                                 buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120), registry=r)
        self.unserved = Counter("alerts_unserved", "notifications for a subscriber that cannot be served",
                                ["subscriber"], registry=r)
        self.subscriber_up = Gauge("alerts_subscriber_up", "1: the subscriber can be served, 0: see the log", sub,
                                   registry=r)
        self.acks = Counter("alerts_acks", "acknowledgements received, by source", ["source"], registry=r)
        self.open = Gauge("alerts_open", "alerts of the owned partitions by state", ["state"], registry=r)
        self.inhibited = Gauge("alerts_inhibited", "notifications held back by the storms under way", registry=r)
        self.compacted = Counter("alerts_compacted", "closed alerts forgotten after keep_resolved", registry=r)
        self.outbox = Gauge("alerts_outbox", "notifications not yet confirmed or dead-lettered", registry=r)
        self.partitions = Gauge("alerts_owned_partitions", "alerts.events partitions owned", registry=r)
        self.lag = Gauge("alerts_consumer_lag", "alerts.events records not yet consumed", ["partition"], registry=r)
        self.errors = Counter("alerts_errors", "errors by service and operation", ["service", "operation"],
                              registry=r)
        self.influx_backlog = Gauge("alerts_influx_backlog", "lines waiting for InfluxDB", registry=r)
        self.influx_refused = Counter("alerts_influx_refused", "lines InfluxDB refused (400/422), dropped and logged",
                                      registry=r)
        self.influx_dropped = Counter("alerts_influx_dropped", "lines dropped: backlog full during an outage",
                                      registry=r)


class _Rebalance(ConsumerRebalanceListener):
    """Queues what a rebalance changed; the poll loop applies it (kafka-python runs this callback on its
    IO thread, where blocking reads do not belong and the books are not to be touched)."""

    def __init__(self, router: "AlertRouter") -> None:
        self.router = router

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.router.rebalances.put(("revoked", [tp.partition for tp in revoked]))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.router.rebalances.put(("assigned", [tp.partition for tp in assigned]))


class AlertRouter:
    """Consumes alerts.events in a consumer group and keeps the books of the partitions it owns."""

    def __init__(self, settings: Settings, config: AlertConfig, *, group: str = "alert-router",
                 instance: str = "1", http_host: str = "127.0.0.1", http_port: int = 9311,
                 session_expiry: int = 7 * 86400, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.config, self.group, self.clock = settings, config, group, clock
        self.session_expiry = session_expiry
        self.http_host, self.http_port = http_host, http_port
        self.policies = {name: rule.policy() for name, rule in config.rules.items()}
        self.metrics = RouterMetrics()
        self.stopping = threading.Event()
        self.books: dict[int, AlertBook] = {}
        self.generation: dict[int, int] = {}
        self._generations = 0
        self.outbox: dict[str, int] = {}            # outbox record key -> partition (pending deliveries)
        self.grouped: dict[tuple[str, str, str], tuple[float, list[tuple[int, int, Notification]]]] = {}
        self.finished: queue.Queue[tuple[Delivery, str]] = queue.Queue()
        self.field_acks: queue.Queue[Any] = queue.Queue()
        self.pubacks: dict[int, Any] = {}
        self.broker_max_packet: int | None = None   # from CONNACK (the mqtt transport's limit)
        self.storms = StormWatch(config)
        self._compacted_at = 0.0
        self.influx_lines: list[str] = []
        self.influx = InfluxWriter(settings.influx)
        self._influx_retry_at, self._influx_delay = 0.0, 1.0
        self.consumed: dict[int, int] = {}   # partition -> next offset after the last record applied
        self.producer: KafkaProducer | None = None
        self.consumer: Any = None
        self.watch: RebalanceWatch | None = None
        self.partition_count = 0   # of alerts.events, known once Kafka answers
        self.rebalances: queue.Queue[tuple[str, list[int]]] = queue.Queue()   # from _Rebalance, for step()
        self.http: RouterHTTP | None = None
        self.link_key = config.link_key()
        self.mqtt = mqtt_client(settings, f"alert-router-{group}-{instance}", username="router", manual_ack=True)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_message = lambda c, u, msg: self.field_acks.put(msg)
        self.mqtt.on_publish = lambda c, u, mid, reason, props: self.pubacks.__setitem__(mid, reason)
        self.mqtt.reconnect_delay_set(min_delay=1, max_delay=30)
        self.channels = self._channels()

    # -- set-up ---------------------------------------------------------------------------------------

    def _channels(self) -> dict[str, Channel]:
        """A worker per subscriber that can be served; the others are reported, never fatal."""
        for problem in self.config.problems():
            event(log, "config_problem", logging.WARNING, problem=problem)
        channels = {}
        for sub in self.config.subscriber:
            try:
                transport = TRANSPORTS[sub.channel](sub, self)
                if sub.problems():
                    raise ValueError("; ".join(sub.problems()))
            except ValueError as exc:
                event(log, "subscriber_unavailable", logging.ERROR, subscriber=sub.name, reason=str(exc))
                self.metrics.subscriber_up.labels(sub.name, sub.channel).set(0)
                continue
            self.metrics.subscriber_up.labels(sub.name, sub.channel).set(1)
            channels[sub.name] = Channel(sub, transport, done=lambda d, outcome: self.finished.put((d, outcome)),
                                         dead_letter=self._dead_letter, live=self._live, shape=self._shape,
                                         stopping=self.stopping, metrics=self.metrics)
        event(log, "subscribers", served=",".join(channels) or "none",
              unavailable=",".join(s.name for s in self.config.subscriber if s.name not in channels) or "none")
        return channels

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            event(log, "mqtt_connect_failed", logging.ERROR, reason=reason.getName())
            return
        self.broker_max_packet = getattr(props, "MaximumPacketSize", None)   # larger publishes cost the connection
        client.subscribe(f"{ACK_TOPIC}/+", qos=1)
        event(log, "mqtt_connected", session_present=flags.session_present, max_packet=self.broker_max_packet)

    def _wait_for(self, what: str, call: Callable[[], T]) -> T:
        """Call until it succeeds: an outage of Kafka of any length is waited out with backoff."""
        delay = 0.5
        while True:
            try:
                return call()
            except (KafkaError, OSError) as exc:
                self.metrics.errors.labels("kafka", what).inc()
                event(log, "kafka_unavailable", logging.WARNING, operation=what, error=f"{type(exc).__name__}: "
                      f"{str(exc)[:200]}", retry_in=delay)
            if self.stopping.wait(delay):
                raise _Stopped()
            delay = min(delay * 2, 30.0)

    def _ensure_state_partitions(self) -> int:
        """alerts.state needs a partition per alerts.events partition (older stacks made it with one)."""
        assert self.producer is not None
        events = events_partitions(self.producer, self.settings)
        state = len(self.producer.partitions_for(state_topic(self.settings)))
        if state < events:
            admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka.bootstrap)
            try:
                admin.create_partitions({state_topic(self.settings): NewPartitions(events)})
            finally:
                admin.close()
            event(log, "state_partitions_added", topic=state_topic(self.settings), before=state, after=events)
        return events

    # -- ownership ------------------------------------------------------------------------------------

    def assign(self, partitions: list[int]) -> None:
        """Load the alerts, silences and undelivered notifications of the partitions gained."""
        state = self._wait_for("load_state", lambda: read_state(self.settings, partitions, self.stopping)
                               ) if partitions else {}
        for p in partitions:
            self._generations += 1
            self.generation[p] = self._generations
            book = AlertBook(self.policies)
            pending = []
            for key, value in state[p].items():
                if key.startswith("silence/"):
                    book.silence(Silence(**{k: v for k, v in value.items() if k in Silence.__dataclass_fields__}))
                elif key.startswith("outbox/"):
                    pending.append((key, value))
                elif "rule" in value and key_hash(key) % self.partition_count == p:
                    book.alerts[key] = Alert.from_dict(value)
                else:   # a one-partition alerts.state of an older router: its alerts come back with new observations
                    event(log, "state_record_skipped", logging.WARNING, partition=p, key=key[:200])
            self.books[p] = book
            for key, value in pending:
                note = Notification.from_dict(value["note"])
                if value["subscriber"] not in self.channels:
                    self.metrics.unserved.labels(value["subscriber"]).inc()
                    continue  # kept in the outbox until the subscriber can be served
                self.outbox[key] = p
                self._enqueue(value["subscriber"], p, note, 0.0)   # a grouping window that has passed: due now
            event(log, "partition_loaded", partition=p, alerts=len(book.alerts), silences=len(book.silences),
                  outbox=len(pending))
        self.metrics.partitions.set(len(self.books))
        event(log, "partitions_assigned", partitions=",".join(map(str, sorted(self.books))) or "none")

    def revoke(self, partitions: list[int]) -> None:
        """Forget what another router owns now; its outbox records stay for the new owner."""
        for p in partitions:
            self.books.pop(p, None)
            self.generation.pop(p, None)
            self.outbox = {k: v for k, v in self.outbox.items() if v != p}
        for gkey, (first, items) in list(self.grouped.items()):
            kept = [i for i in items if i[0] in self.generation]
            if kept:
                self.grouped[gkey] = (first, kept)
            else:
                del self.grouped[gkey]
        self.metrics.partitions.set(len(self.books))
        event(log, "partitions_revoked", partitions=",".join(map(str, sorted(partitions))))

    def _live(self, delivery: Delivery) -> bool:
        return all(self.generation.get(p) == g for p, g in delivery.origins)

    # -- loop -------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until stop(): outages of Kafka, InfluxDB or Mosquitto are waited out, never fatal."""
        if self.http_port:
            try:
                self.http = RouterHTTP(self.http_host, self.http_port, self.metrics.registry, lambda: self.link_key,
                                       self._link_ack, self.clock, status=self._ack_status, alerts=self.alert_list)
                event(log, "http_listening", port=self.http.port, links="on" if self.link_key else "off")
            except OSError as exc:   # alerts still flow; links and metrics need a free --http-port
                event(log, "http_unavailable", logging.ERROR, port=self.http_port, error=str(exc),
                      fix="give this router its own --http-port")
        try:
            mqtt_connect(self.mqtt, self.settings, session_expiry=self.session_expiry)
        except OSError as exc:  # the network thread keeps trying
            event(log, "mqtt_unavailable", logging.WARNING, error=str(exc)[:200])
        self.mqtt.loop_start()
        try:
            self.producer = self._wait_for("connect", lambda: kafka_producer(self.settings, linger_ms=0))
            self.partition_count = self._wait_for("partitions", self._ensure_state_partitions)
            self._join()
            while not self.stopping.is_set():
                if self.watch is not None and self.watch.stalled():
                    event(log, "rebalance_stalled", logging.WARNING, seconds=self.watch.stall_after,
                          action="leaving and joining again with a new consumer")
                    self.consumer.close(autocommit=False)
                    self._join()
                self.step()
            self._flush_groups(force=True)
            for ch in self.channels.values():
                ch.close()
            self._finish()
        except _Stopped:
            event(log, "stopped_while_waiting", logging.WARNING)
        finally:
            self._shutdown()

    def _join(self) -> None:
        """A consumer of the group, subscribed once the broker knows alerts.events."""
        self.consumer = self._wait_for("connect", lambda: kafka_consumer(
            self.settings, self.group, max_poll_records=1000, session_timeout_ms=6000, heartbeat_interval_ms=1500))
        self.watch = RebalanceWatch(_Rebalance(self))
        if not subscribe_when_known(self.consumer, [self.settings.kafka.alerts_topic], self.watch, self.stopping):
            raise _Stopped()

    def stop(self) -> None:
        self.stopping.set()

    def step(self) -> None:
        """One pass: poll, apply, persist state + outbox (confirmed), commit, dispatch, clean the outbox."""
        polled = self._wait_for("poll", lambda: self.consumer.poll(timeout_ms=100))
        while not self.rebalances.empty():
            change, partitions = self.rebalances.get()
            (self.assign if change == "assigned" else self.revoke)(partitions)
        if unknown := sorted({tp.partition for tp in polled} - set(self.books)):
            self.assign(unknown)   # (cannot happen with an eager assignor; never apply to an empty book)
        if not self.books:
            self.stopping.wait(0.5)   # nothing owned (more routers than partitions): poll would spin
        now = self.clock()
        changes: list[tuple[int, Change]] = []
        for tp, records in polled.items():
            for r in records:
                changes.extend((tp.partition, c) for c in self._apply(tp.partition, r, now))
            self.consumed[tp.partition] = records[-1].offset + 1
        for p, book in self.books.items():
            changes.extend((p, c) for c in book.tick(now))
        self._persist([(p, c) for p, c in changes if c[0] is not None], now)
        if polled:
            self._commit()
        self._compact(now)
        self._forward_field_acks()
        self._flush_groups()
        self._finish()
        self._write_influx()
        self._gauges()

    def _compact(self, now: float) -> None:
        """Once a minute: forget closed alerts older than keep_resolved, in memory and in alerts.state."""
        if time.monotonic() - self._compacted_at < 60:
            return
        self._compacted_at = time.monotonic()
        tombstones = {p: dict.fromkeys(keys) for p, book in self.books.items()
                      if (keys := book.compact(now, self.config.keep_resolved))}
        if tombstones:
            self._save(tombstones, "compact")
            self.metrics.compacted.inc(sum(map(len, tombstones.values())))

    def alert_list(self, rule: str | None, state: str | None, offset: int, limit: int) -> dict[str, Any]:
        """A page of the alerts of the owned partitions (the full list a summarised notification links)."""
        found = [a for book in list(self.books.values()) for a in list(book.alerts.values())
                 if (rule is None or a.rule == rule) and (state is None or a.state == state)]
        found.sort(key=lambda a: (a.rule, a.entity))
        return {"total": len(found), "offset": offset, "alerts": [
            {k: getattr(a, k) for k in ("rule", "entity", "site", "severity", "state", "value", "threshold",
                                         "fired_at", "acked_by", "acked_at")} | {"id": a.id}
            for a in found[offset:offset + limit]]}

    def _commit(self) -> None:
        """Commit the consumed offsets. A failure (a rebalance under way, Kafka away) is not retried here:
        the next poll rejoins the group, and whoever owns a partition replays from the last commit (each
        alert skips the records it has already applied)."""
        try:
            self.consumer.commit()
        except KafkaError as exc:
            self.metrics.errors.labels("kafka", "commit").inc()
            event(log, "commit_failed", logging.WARNING, error=f"{type(exc).__name__}: {str(exc)[:200]}")

    def _apply(self, partition: int, record: Any, now: float) -> list[Change]:
        """One alerts.events record: an observation, an ack or a silence, validated against its contract
        (schemas/alerting.py). Whatever goes wrong with one record is dead-lettered with the reason and
        counted; no record can stop the router."""
        try:
            event_ = parse_event(record.value)
            self.metrics.records.labels(event_.type).inc()
            return self._apply_valid(partition, record.offset, event_, now)
        except _Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - one record's trouble is that record's, never the router's
            reason = str(exc) if isinstance(exc, EventRejected) else f"{type(exc).__name__}: {exc}"
            self.metrics.rejected.labels("invalid" if isinstance(exc, EventRejected) else "error").inc()
            self._dead_letter_raw(f"kafka/{record.topic}/{partition}/{record.offset}", record.value or b"",
                                  f"not a valid observation, ack or silence: {reason}")
            return []

    def _apply_valid(self, partition: int, offset: int, record: Observation | AckCommand | SilenceCommand,
                     now: float) -> list[Change]:
        book = self.books[partition]
        if isinstance(record, AckCommand):
            alert = book.find(record.id)
            if alert is None:
                event(log, "ack_unknown_alert", logging.WARNING, id=record.id, partition=partition)
                return []
            if alert.offset >= offset:
                return []  # applied before a crash: replayed
            self.metrics.acks.labels(record.source).inc()
            changed = book.acknowledge(record.id, record.by, record.comment, min(record.at, now), record.source)
        elif isinstance(record, SilenceCommand):
            silence = Silence(record.id, dict(record.matchers), record.start, record.end, record.created_by,
                              record.comment)
            book.silence(silence)
            self._save({partition: {f"silence/{silence.id}": silence.__dict__}}, "silence")
            return []
        else:
            alert = book.alerts.get(record.key)
            if alert is not None and alert.offset >= offset:
                return []
            changed = book.observe(record.model_dump(), now)
        if changed[0] is not None:
            changed[0].offset = offset
        return [changed]

    def _persist(self, changes: list[tuple[int, Change]], now: float) -> None:
        """Write changed alerts and their outbox records (confirmed), record them for the wall, dispatch."""
        if not changes and not self.storms.active:
            return
        records: dict[int, dict[str, Any]] = {}
        deliveries = []
        over = self.storms.ended(time.monotonic(), now, set(self.generation))
        for p, (alert, notes) in changes + [(p, (None, [n])) for p, n in over]:
            if alert is not None:
                records.setdefault(p, {})[alert.key] = alert.to_dict()
            for n in self.storms.admit(p, notes, time.monotonic(), now):
                self.metrics.transitions.labels(n.kind).inc()
                if n.alert.get("storm"):
                    event(log, "storm_" + ("started" if n.kind == "firing" else "over"), logging.WARNING,
                          rule=n.alert["rule"], alerts=int(n.alert["value"]), held=sum(n.alert["held"].values()))
                for sub in self.config.subscriber:
                    try:
                        wanted = sub.wants(n)
                    except (KeyError, ValueError, TypeError) as exc:   # an alert saved by an older router
                        self.metrics.errors.labels("router", "select").inc()
                        event(log, "subscriber_select_failed", logging.ERROR, subscriber=sub.name, key=n.key,
                              error=f"{type(exc).__name__}: {exc}"[:200])
                        continue
                    if not wanted:
                        continue
                    if sub.name not in self.channels:
                        self.metrics.unserved.labels(sub.name).inc()
                        continue
                    records.setdefault(p, {})[outbox_key(sub.name, n)] = {"subscriber": sub.name, "note": n.to_dict()}
                    deliveries.append((p, sub.name, n))
        self.metrics.inhibited.set(self.storms.inhibited_total())
        if not records:
            return
        self._save(records, "state")
        self._record([a for _, (a, _) in changes if a is not None], now)
        for p, name, n in deliveries:
            self.outbox[outbox_key(name, n)] = p
            self._enqueue(name, p, n, time.monotonic())

    def _enqueue(self, subscriber: str, partition: int, note: Notification, since: float) -> None:
        """To the subscriber's channel now, or into the grouping window of (subscriber, rule, kind) opened
        at `since` (monotonic seconds)."""
        origin = (partition, self.generation[partition])
        if self.config.group_window <= 0 or note.alert.get("storm"):   # a storm's own alert: at once, alone
            self.channels[subscriber].send(Delivery(subscriber, [note], [origin]))
            return
        key = (subscriber, note.alert["rule"], note.kind)
        first, items = self.grouped.get(key, (since, []))
        self.grouped[key] = (min(first, since), items + [(*origin, note)])

    def _flush_groups(self, force: bool = False) -> None:
        for gkey, (first, items) in list(self.grouped.items()):
            if force or time.monotonic() - first >= self.config.group_window:
                del self.grouped[gkey]
                self.channels[gkey[0]].send(Delivery(gkey[0], [n for _, _, n in items], [(p, g) for p, g, _ in items]))

    def _finish(self) -> None:
        """Delete the outbox records of deliveries that are done; re-send those that came back "moved"
        from partitions still ours."""
        tombstones: dict[int, dict[str, Any]] = {}
        while not self.finished.empty():
            delivery, outcome = self.finished.get()
            for (p, g), n in zip(delivery.origins, delivery.notes):
                key = outbox_key(delivery.subscriber, n)
                if outcome == "moved":
                    if self.generation.get(p) == g:
                        self.channels[delivery.subscriber].send(Delivery(delivery.subscriber, [n], [(p, g)]))
                    continue
                tombstones.setdefault(p, {})[key] = None
                self.outbox.pop(key, None)
        if tombstones:
            self._save(tombstones, "outbox_done")

    def _save(self, records: dict[int, dict[str, Any]], what: str) -> None:
        """Write records to alerts.state (explicit partitions) and wait until Kafka confirmed every one."""
        assert self.producer is not None
        topic = state_topic(self.settings)

        def write() -> None:
            futures = [self.producer.send(topic, key=k.encode(), partition=p, value=None if v is None else
                                          json.dumps(v, ensure_ascii=False).encode())
                       for p, recs in records.items() for k, v in recs.items()]
            for f in futures:
                f.get(timeout=60)
        self._wait_for(what, write)

    # -- acknowledgements -------------------------------------------------------------------------------

    def _forward_field_acks(self) -> None:
        """MQTT acks -> alerts.events (to the owning partition); the broker gets its PUBACK after Kafka."""
        while not self.field_acks.empty():
            msg = self.field_acks.get()
            alert_id = msg.topic.rsplit("/", 1)[-1]
            try:
                body = parse_field_ack(msg.payload)   # a field app's own `at` is ignored: received now
                command = ack_command(alert_id, body.by, body.comment, "mqtt", self.clock())
            except ValueError as exc:   # EventRejected, pydantic's ValidationError (the id)
                self.metrics.rejected.labels("invalid").inc()
                reason = str(exc) if isinstance(exc, EventRejected) or valid_alert_id(alert_id) else (
                    f"{alert_id[:80]!r} is not an alert id (like 1a2b3c4d5e6f-3): copy it from the notification")
                self._dead_letter_raw(f"mqtt/{msg.topic}"[:300], msg.payload or b"", f"acknowledgement rejected: {reason}")
            else:
                self._wait_for("forward_ack", lambda: send_ack(self.producer, self.settings, alert_id, command["by"],
                                                               command["comment"], "mqtt", command["at"]))
            self.mqtt.ack(msg.mid, msg.qos)

    def _ack_status(self, alert_id: str) -> tuple[str, float] | None:
        """(by, at) of the first acknowledgement of an alert this router owns (HTTP thread: reads a copy)."""
        book = self.books.get(id_partition(alert_id, self.partition_count)) if self.partition_count else None
        alert = next((a for a in list(book.alerts.values()) if a.id == alert_id), None) if book else None
        return (alert.acked_by or "", alert.acked_at) if alert is not None and alert.acked_at is not None else None

    def _link_ack(self, alert_id: str, by: str, comment: str, source: str) -> None:
        if self.producer is None:
            raise RuntimeError("not connected to Kafka yet")
        send_ack(self.producer, self.settings, alert_id, by, comment, source, self.clock())

    def _shape(self, delivery: Delivery) -> Shape:
        """Acknowledge links (not on MQTT), the rule's bound on listed alerts, and the full list's address."""
        sub = next(s for s in self.config.subscriber if s.name == delivery.subscriber)
        rule = delivery.notes[0].alert["rule"]
        more = (f"{self.config.link_base.rstrip('/')}/alerts?" + urllib.parse.urlencode({"rule": rule})
                if len(delivery.notes) > 1 else None)
        listed = self.config.rule(rule).max_entities
        if self.link_key is None or sub.channel == "mqtt":
            return Shape({}, listed, more)
        exp = int(self.clock() + self.config.link_ttl)
        return Shape({n.alert["id"]: sign_link(self.config.link_base, self.link_key, n.alert["id"], sub.name, exp)
                      for n in delivery.notes[:listed] if not n.alert.get("storm")}, listed, more)

    # -- dead letters -----------------------------------------------------------------------------------

    def _dead_letter(self, sub: Subscriber, body: bytes, reason: str) -> bool:
        """A notification that could not be delivered, kept with its reason; True once Kafka has it."""
        try:
            self._dead_letter_raw(f"alerts/{sub.channel}/{sub.name}", body, f"delivery to {sub.name} failed: {reason}")
        except _Stopped:
            return False
        return True

    def _dead_letter_raw(self, source: str, raw: bytes, reason: str) -> None:
        record = DeadLetter.of(source, raw, reason).model_dump_json().encode()
        event(log, "dead_letter", logging.WARNING, source=source, reason=reason[:200])
        self._wait_for("dead_letter", lambda: self.producer.send(  # type: ignore[union-attr]
            self.settings.kafka.deadletter_topic, key=source.encode(), value=record).get(timeout=60))

    # -- InfluxDB: the wall's history and the closed loop's times ---------------------------------------

    def _record(self, alerts: list[Alert], now: float) -> None:
        """Queue one `alerts` point per change, and for fired alerts the episode's `alert_times` point
        (time = fire time, so it is rewritten, not repeated: `fired`, then time to acknowledge `tta_s`
        and time to resolve `ttr_s` as they happen). dashboards/alertloop.py reads both."""
        base = int(now * 1e9)
        for i, a in enumerate(alerts):
            tags = {"rule": a.rule, "domain": a.domain, "site": a.site, "entity": a.entity}
            self.influx_lines.append(Point("alerts", tags, {
                "state": a.state, "severity": a.severity, "value": float(a.value), "threshold": float(a.threshold),
                "alert_id": a.id, "acked": int(a.acked_at is not None), "acked_by": a.acked_by or "",
                "fired_at": a.fired_at, "title_en": a.title_en, "title_zh": a.title_zh}, base + i).line())
            if a.fired_at is not None:   # one point per episode, at its fire time: fields added as it closes
                self.influx_lines.append(Point("alert_times", tags, {
                    "alert_id": a.id, "severity": a.severity, "fired": 1,
                    "tta_s": None if a.acked_at is None else max(a.acked_at - a.fired_at, 0.0),
                    "ttr_s": None if a.resolved_at is None else max(a.resolved_at - a.fired_at, 0.0)},
                    int(a.fired_at * 1e9)).line())
        if len(self.influx_lines) > MAX_INFLUX_BACKLOG:
            dropped = len(self.influx_lines) - MAX_INFLUX_BACKLOG
            self.metrics.influx_dropped.inc(dropped)
            event(log, "influx_backlog_full", logging.ERROR, dropped=dropped)
            del self.influx_lines[:dropped]

    def _write_influx(self) -> None:
        """Write the backlog; during an InfluxDB outage keep it and retry with backoff (notifications go on).
        Lines InfluxDB refuses (400/422) cannot succeed later: they are dropped, logged and counted."""
        if not self.influx_lines or time.monotonic() < self._influx_retry_at:
            return
        batches = [self.influx_lines]   # a stack: the last one is written next
        while batches:
            batch = batches.pop()
            try:
                self.influx.write(self.settings.influx.bucket_compliance, batch)
            except Exception as exc:  # noqa: BLE001 - InfluxDB down or no token: keep the lines, retry later
                if not (isinstance(exc, InfluxWriteError) and exc.status in REFUSED):
                    self.influx_lines = batch + [line for b in reversed(batches) for line in b]  # in order
                    self._influx_retry(exc)
                    return
                if len(batch) > 1:   # bisect to the refused lines; the others are written
                    mid = len(batch) // 2
                    batches += [batch[mid:], batch[:mid]]
                    continue
                self.metrics.influx_refused.inc()
                event(log, "influx_line_refused", logging.ERROR, line=batch[0][:500], reason=exc.body[:300])
        self.influx_lines = []
        self._influx_delay = 1.0

    def _influx_retry(self, exc: Exception) -> None:
        """Keep the backlog and try again later, backing off to a minute."""
        self.metrics.errors.labels("influxdb", "write").inc()
        event(log, "influx_write_failed", logging.WARNING, lines=len(self.influx_lines),
              error=f"{type(exc).__name__}: {str(exc)[:200]}", retry_in=self._influx_delay)
        self._influx_retry_at = time.monotonic() + self._influx_delay
        self._influx_delay = min(self._influx_delay * 2, 60.0)

    def _gauges(self) -> None:
        states: dict[str, int] = {"pending": 0, "firing": 0, "resolved": 0, "cleared": 0}
        for book in self.books.values():
            for a in book.alerts.values():
                states[a.state] = states.get(a.state, 0) + 1
        for state, n in states.items():
            self.metrics.open.labels(state).set(n)
        self.metrics.outbox.set(len(self.outbox))
        self.metrics.influx_backlog.set(len(self.influx_lines))
        for tp in self.consumer.assignment():   # no blocking call here: a rebalance may be under way
            highwater = self.consumer.highwater(tp)
            if highwater is not None and tp.partition in self.consumed:
                self.metrics.lag.labels(str(tp.partition)).set(highwater - self.consumed[tp.partition])

    def _shutdown(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
        if self.producer is not None:
            self.producer.close(10)
        self._write_influx()
        self.influx.close()
        self.mqtt.disconnect()  # a persistent session: no UNSUBSCRIBE, acks sent meanwhile wait for us
        self.mqtt.loop_stop()
        if self.http is not None:
            self.http.close()
        event(log, "router_stopped", outbox=len(self.outbox))
