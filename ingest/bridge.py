"""The ingest bridge: MQTT (QoS 1, persistent session, shared subscription) -> Kafka, nothing lost.

Delivery: a message is acknowledged to the broker (paho manual ack) only after Kafka acknowledged
every record made from it (acks=all, idempotent producer); an ack that cannot be sent (the connection
it came on is gone) is counted and logged, and the broker redelivers that message.

Flow control never blocks paho's network thread, so keepalive flows through Kafka outages of any
length. The bridge holds at most `window` unacknowledged messages. Mosquitto 2.0.11 honours our MQTT
v5 Receive Maximum only until PUBACKs flow (measured: with a limit of 10, acking 5 messages let 50 more
in), so the bridge bounds itself: a message arriving while the window is full is neither acknowledged
nor kept (its payload is dropped from memory and counted) and the connection it came on stops taking
messages ("draining"). The broker keeps every unacknowledged message in our persistent session and
sends it again, with the DUP flag, only when the session is resumed (measured on 2.0.11: nothing is
resent on a live connection, even after 40 s; all of it on reconnect). So once the drained
connection holds nothing more, the bridge disconnects and reconnects with clean_start off and gets the
dropped messages back. During a Kafka outage nothing is acknowledged, the broker's send quota runs out,
and the connection idles with keepalive flowing.

Kafka: every produce future is checked before the ack that depends on it. Retriable errors (broker
away, timeouts) are retried with exponential backoff for as long as they last, visible in the
`bridge_kafka_retries` metric and `kafka_retry` logs. A record Kafka refuses for good (too large, an
invalid record, a topic that does not exist) must not block the stream: the batch is sent again one
message at a time to find the message at fault, which is dead-lettered with the reason and acked.

Share groups: Mosquitto 2.0.11 keeps routing a shared subscription's messages to a member that is
offline with a persistent session, so a bridge that dies for good would strand its share until its
session expires. Each bridge therefore keeps a retained status (`ingest.peers`): "online" on connect,
"offline" as its Last Will and on a planned stop. A live bridge (one per dead peer, chosen the same way
by all) adopts a peer that stayed offline longer than `adopt_after`: it connects AS that peer with
clean_start off, unsubscribes the peer's filters (no new messages are routed to it), forwards what the
session holds through the same window, and ends the session (DISCONNECT with Session Expiry 0), which
takes it out of the share group. A peer that comes back simply takes its session over (the broker
disconnects the adopter, whose unacked messages go back to the peer: at-least-once, and InfluxDB
writes are idempotent). With no live peer, the session waits for the bridge's return for
`session_expiry` seconds (default 1 h): a planned restart of the only bridge loses nothing.
Invalid messages go to the dead-letter topic with their raw bytes and the reason.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from infra.clients import kafka_producer, mqtt_client, mqtt_connect
from infra.influxwrite import InfluxWriter
from infra.logs import event
from infra.settings import Settings
from ingest.peers import STATUS_ROOT, PeerTable, status_payload, status_topic
from schemas.adapters import PayloadError, parse, route
from schemas.batch import MessageReadings, ReadingBatch, Validated, validate_many
from schemas.envelope import DeadLetter

log = logging.getLogger("smartcity.bridge")

SOURCE_FILTERS = (
    "city/+/+/+/up",                      # native JSON
    "city/+/+/+/senml",                   # SenML packs
    "v3/+/devices/+/up",                  # The Things Stack v3
    "application/+/device/+/event/up",    # ChirpStack v4
)
Record = tuple  # (topic, key, value, headers, timestamp ms): what encode() makes of messages
ADOPT_CONNECT_TIMEOUT = 30.0   # an adoption that has not connected by then is dropped and tried later


@dataclass
class BridgeConfig:
    """How one bridge process subscribes, batches and reports."""

    client_id: str = "bridge-1"
    group: str = "ingest"                  # bridges that watch each other (status, adoption)
    filters: tuple[str, ...] = SOURCE_FILTERS
    shared: bool = False                   # subscribe $share/<group>/<filter>: bridges split the stream
    window: int = 2000                     # unacknowledged MQTT messages held, at most
    batch_max: int = 1000                  # messages decoded and produced together
    linger: float = 0.02                   # seconds to wait for a batch to fill
    session_expiry: int = 3600             # broker keeps our session (and queued messages) this long
    adopt_after: float = 60.0              # seconds a peer stays offline before its session is adopted
    adopt_quiet: float = 2.0               # an adopted session is drained after this long without messages
    max_backoff: float = 30.0              # longest wait between Kafka retries
    producer_stuck_after: float = 300.0    # sends neither done nor failed this long: a new producer
    metrics_port: int | None = None        # Prometheus endpoint, None: off
    log_interval: float = 10.0

    def __post_init__(self) -> None:
        for name in ("client_id", "group"):
            value = getattr(self, name)
            if not value or any(c in value for c in "/+#"):
                raise ValueError(f"bridge {name} {value!r} must be non-empty without '/', '+' or '#': "
                                 f"it is a level of the MQTT topics {STATUS_ROOT}/<group>/<client_id>")
        self.batch_max = min(self.batch_max, self.window)  # a batch can never outgrow the window

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The topic filters this bridge's own session subscribes to, as sent to the broker."""
        return tuple(f"$share/{self.group}/{f}" for f in self.filters) if self.shared else self.filters


@dataclass
class BridgeMetrics:
    """Prometheus metrics of one bridge (own registry, so several bridges can share a process)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.received = Counter("bridge_received", "MQTT messages received", ["format"], registry=r)
        self.forwarded = Counter("bridge_forwarded_readings", "readings produced to Kafka", ["domain"], registry=r)
        self.deadlettered = Counter("bridge_deadlettered", "messages sent to the dead-letter topic", registry=r)
        self.acked = Counter("bridge_acked", "MQTT messages acknowledged after Kafka accepted them", registry=r)
        self.ack_failed = Counter("bridge_ack_failed", "acks not sent (the broker redelivers those messages)",
                                  ["reason"], registry=r)
        self.inflight = Gauge("bridge_inflight", "messages received and not yet acknowledged", registry=r)
        self.window_dropped = Counter("bridge_window_dropped", "messages left unacknowledged because the window "
                                      "was full (redelivered after the drained connection reconnects)", registry=r)
        self.connects = Counter("bridge_mqtt_connects", "MQTT connections made", ["link", "cause"], registry=r)
        self.reconnects = Counter("bridge_reconnects", "MQTT connections lost and made again", registry=r)
        self.produce_retries = Counter("bridge_kafka_retries", "records sent again after a retriable Kafka error",
                                       registry=r)
        self.refused = Counter("bridge_kafka_refused", "records Kafka refused for good (their message is "
                               "dead-lettered)", ["error"], registry=r)
        self.producer_restarts = Counter("bridge_kafka_producer_restarts", "producers replaced because their "
                                         "sends neither completed nor failed", registry=r)
        self.adoptions = Counter("bridge_adoptions", "sessions of dead peers adopted", ["result"], registry=r)
        self.latency = Histogram("bridge_produce_latency_seconds", "time from batch start to Kafka ack",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)


class Abandoned(Exception):
    """Kafka still fails while the bridge stops: the batch is left unacknowledged for redelivery."""


@dataclass(slots=True)
class Held:
    """A message inside the window, with the connection it came on (an ack goes only there)."""

    link: Link
    generation: int
    msg: mqtt.MQTTMessage


class Link:
    """One MQTT connection feeding the bridge's window: the bridge's own session, or a dead peer's
    session it adopted. Its callbacks run on paho's network thread and never wait."""

    def __init__(self, bridge: Bridge, client_id: str, *, adopted: bool = False,
                 filters: tuple[str, ...] = ()) -> None:
        cfg = bridge.config
        self.bridge = bridge
        self.client_id = client_id
        self.adopted = adopted
        self.filters = filters or cfg.subscriptions   # full topic filters, as subscribed
        self.granted: set[str] = set()                  # filters the broker confirmed (SUBACK)
        self.leaving: set[str] = set()                  # filters given back, until the broker confirms
        self._asked: dict[int, tuple[str, ...]] = {}    # SUBSCRIBE/UNSUBSCRIBE mid -> its filters
        self._asked_lock = threading.Lock()
        self.generation = 0            # bumped on every connect and disconnect
        self.held = 0                  # this link's messages in the window (under bridge.lock)
        self.draining = False          # the window overflowed: take nothing until held == 0, then reconnect
        self.closing = False           # we are ending this connection on purpose
        self.lost = False              # an adopted connection ended (taken over or dropped)
        self.session_present: bool | None = None
        self.connect_started = time.monotonic()
        self.connected_at: float | None = None   # monotonic time of the latest CONNACK
        self.unsubscribed = False
        self.last_message = time.monotonic()
        self._cause = "start"
        self.client = mqtt_client(bridge.settings, client_id, manual_ack=True, reconnect=not adopted)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        if not adopted:
            self._set_will()

    def _set_will(self) -> None:
        """Our Last Will: "offline" with every subscription the session holds (paho sends it on connect)."""
        self.client.will_set(status_topic(self.bridge.config.group, self.client_id),
                             status_payload(self.client_id, "offline", self.filters, self.bridge.config.subscriptions,
                                            self.bridge.instance),
                             qos=1, retain=True)

    @property
    def name(self) -> str:
        return f"adopted:{self.client_id}" if self.adopted else "own"

    def connect(self, cause: str) -> None:
        """Connect (the network loop retries while the broker is away), resuming the session."""
        self._cause = cause
        self.connect_started = time.monotonic()
        mqtt_connect(self.client, self.bridge.settings, session_expiry=self.bridge.config.session_expiry,
                     receive_maximum=self.bridge.config.window, wait=False)
        self.client.loop_start()

    def reconnect(self, cause: str = "drain") -> None:
        """Disconnect (the session and its unacked messages stay) and resume it: the drained connection,
        so the broker sends again what was dropped while the window was full, or a new Last Will."""
        self.closing = True
        self.client.disconnect()
        _stop_loop(self.client)
        self.closing = False
        with self.bridge.lock:
            self.draining = False
        self.connect(cause)

    def close(self, *, end_session: bool = False) -> None:
        """Disconnect; `end_session` sets Session Expiry 0, so the broker drops the session (and with
        it the session's place in the share group)."""
        self.closing = True
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self.client.disconnect(properties=props)
        _stop_loop(self.client)

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        bridge, cfg = self.bridge, self.bridge.config
        if reason.is_failure:
            event(log, "mqtt_connect_failed", logging.ERROR, link=self.name, reason=reason.getName())
            return
        self.generation += 1
        cause, self._cause = self._cause, "lost"
        bridge.metrics.connects.labels(self.name, cause).inc()
        if cause == "lost":
            bridge.metrics.reconnects.inc()
        self.session_present = flags.session_present
        self.connected_at = time.monotonic()
        if self.adopted:
            # Stop routing more to the dead peer (our own session took its plain filters over before we
            # connected); what its session holds still comes.
            if flags.session_present:
                client.unsubscribe(list(self.filters) + [status_topic(cfg.group, "+")])
        else:
            self._subscribe(self.filters)
            client.subscribe(status_topic(cfg.group, "+"), 0)
            if self.leaving:
                self._unsubscribe(tuple(self.leaving))
            self.publish_status("online")
        event(log, "mqtt_connected", link=self.name, client_id=self.client_id, cause=cause,
              session_present=flags.session_present, window=cfg.window)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        self.generation += 1
        if self.adopted and not self.closing:
            self.lost = True
        if not self.closing and not self.bridge.stopping.is_set():
            event(log, "mqtt_disconnected", logging.WARNING, link=self.name, reason=reason.getName())

    def _subscribe(self, filters: tuple[str, ...]) -> None:
        """SUBSCRIBE (QoS 1); paho refuses while disconnected, and on_connect subscribes everything again.
        The mid is recorded under the lock the SUBACK callback takes, so the answer cannot come first."""
        with self._asked_lock:
            rc, mid = self.client.subscribe([(f, 1) for f in filters])
            if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._asked[mid] = filters

    def _unsubscribe(self, filters: tuple[str, ...]) -> None:
        with self._asked_lock:
            rc, mid = self.client.unsubscribe(list(filters))
            if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._asked[mid] = filters

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reasons: list[mqtt.ReasonCode], properties: Properties | None) -> None:
        with self._asked_lock:
            filters = self._asked.pop(mid, ())
        refused = [f for f, r in zip(filters, reasons) if r.is_failure]
        if refused:
            event(log, "mqtt_subscribe_refused", logging.ERROR, link=self.name, filters=refused,
                  reasons=[r.getName() for r in reasons if r.is_failure],
                  fix="the broker's ACL must let the bridge account read these filters")
        self.granted.update(f for f, r in zip(filters, reasons) if not r.is_failure)

    def take(self, filters: tuple[str, ...]) -> tuple[str, ...]:
        """Subscribe this (own) session to `filters` too and list them in the status and the Last Will
        at once (a crash right after must not leave them in the session unlisted); returns the new ones."""
        new = tuple(f for f in filters if f not in self.filters)
        if new:
            self.filters += new
            self.leaving.difference_update(new)
            self._subscribe(new)
            self.refresh_will()
        return new

    def release(self, filters: tuple[str, ...], *, listed: bool = True) -> None:
        """Unsubscribe `filters` (taken over from a peer that is back, or, not `listed`, left in the
        session by an earlier configuration); asked again on every connect until the broker confirms."""
        gone = tuple(f for f in filters if f in self.filters or not listed)
        if gone:
            self.filters = tuple(f for f in self.filters if f not in gone)
            self.granted.difference_update(gone)
            self.leaving.update(gone)
            self._unsubscribe(gone)
            self.refresh_will()

    def refresh_will(self) -> None:
        """Say what the session now holds, in the status and in the Last Will. A will is fixed at
        connect time, so the connection is resumed (held messages are redelivered: at-least-once)."""
        self.publish_status("online")
        self._set_will()
        self.reconnect("will")

    def publish_status(self, state: str) -> mqtt.MQTTMessageInfo:
        """The retained status of this bridge, with every subscription its session holds."""
        return self.client.publish(status_topic(self.bridge.config.group, self.client_id),
                                   status_payload(self.client_id, state, self.filters, self.bridge.config.subscriptions,
                                                  self.bridge.instance),
                                   qos=1, retain=True)

    def _on_unsubscribe(self, client: mqtt.Client, userdata: object, mid: int,
                        reasons: list[mqtt.ReasonCode], properties: Properties | None) -> None:
        self.unsubscribed = True
        with self._asked_lock:
            self.leaving.difference_update(self._asked.pop(mid, ()))
        self.last_message = time.monotonic()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith(STATUS_ROOT + "/"):
            if msg.topic == status_topic(self.bridge.config.group, self.client_id):
                if msg.retain and not self.bridge.restore_seen:
                    self.bridge.restore(msg.payload)   # what our session held when we last went away
                else:   # ours since, unless another process runs with our client id
                    self.bridge.check_instance(msg.payload)
            self.bridge.peers.update(msg.topic, msg.payload, time.monotonic())  # QoS 0: nothing to ack
            return
        self.last_message = time.monotonic()
        self.bridge.admit(self, msg)


class Bridge:
    """One bridge process: run() until stop() (or SIGTERM through the CLI)."""

    def __init__(self, settings: Settings, config: BridgeConfig | None = None,
                 producer: KafkaProducer | None = None) -> None:
        self.settings = settings
        self.config = config or BridgeConfig()
        self.metrics = BridgeMetrics()
        self.producer = producer  # made in run(), waiting for Kafka if it is away
        self.inbox: queue.Queue[Held] = queue.Queue()
        self.lock = threading.Lock()
        self.held = 0
        self.stopping = threading.Event()
        self.peers = PeerTable(self.config.group)
        self.instance = uuid.uuid4().hex[:12]   # tells our own status from another process's with our id
        self.link = Link(self, self.config.client_id)
        self.adoptions: dict[str, Link] = {}
        self.taking: dict[str, tuple[str, ...]] = {}   # peer -> its plain filters we subscribe to, until adopted
        self.restored: tuple[tuple[str, ...], tuple[str, ...]] | None = None   # (filters, own) last time
        self.restore_seen = False   # the status found at start was read (later ones are ours)
        self._clash_logged = -1e9
        self._adopt_again_at: dict[str, float] = {}   # peer -> not before (its adoption link was cut)
        self._fresh_status_needed: dict[str, float] = {}   # peer -> when our adoption connected as it
        self._overlap_warned: set[str] = set()
        self._totals = {"received": 0, "forwarded": 0, "deadlettered": 0, "acked": 0}
        self._influx = InfluxWriter(settings.influx, timeout_s=5.0)
        self._missing: dict[str, tuple[float, str]] = {}  # topic found absent -> (refused until, reason)

    def check_instance(self, payload: bytes) -> None:
        """A live status on our own topic from another process: two bridges share our client id, and
        the broker hands the session from one to the other on every connect."""
        try:
            doc = json.loads(payload)
            other = doc.get("instance") if doc.get("state") == "online" else None
        except (ValueError, AttributeError):
            return
        if other and other != self.instance and time.monotonic() - self._clash_logged > 60:
            self._clash_logged = time.monotonic()
            event(log, "client_id_clash", logging.ERROR, client_id=self.config.client_id, other_instance=other,
                  fix="another bridge runs with this --client-id and takes the session over on every "
                      "connect; give every bridge its own --client-id")

    def restore(self, payload: bytes) -> None:
        """Our own retained status from before this start: the subscriptions our session may still hold,
        and which of them the configuration of that time gave us. Called on paho's thread; _tend_links
        acts on it."""
        self.restore_seen = True
        try:
            doc = json.loads(payload)
            filters = tuple(str(f) for f in doc["filters"])
            self.restored = (filters, tuple(str(f) for f in doc.get("own", filters)))
        except (ValueError, KeyError, TypeError):
            return

    # -- MQTT side (paho's network thread: never waits) -----------------------------------------------

    def admit(self, link: Link, msg: mqtt.MQTTMessage) -> None:
        """Take a message into the window, or (window full, draining, stopping) leave it unacknowledged
        for the broker to send again; returns at once either way."""
        with self.lock:
            take = not (self.stopping.is_set() or link.draining or link.closing)
            if take and self.held >= self.config.window:
                link.draining, take = True, False
            if take:
                self.held += 1
                link.held += 1
        if not take:
            self.metrics.window_dropped.inc()
            return
        self.metrics.inflight.inc()
        self.inbox.put(Held(link, link.generation, msg))

    # -- main loop ------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect our own session (the network loop retries until the broker answers)."""
        self.link.connect("start")

    def run(self) -> None:
        """Connect, then forward batches until stop(); on stop, finish what was received and exit."""
        if self.config.metrics_port:
            start_http_server(self.config.metrics_port, registry=self.metrics.registry)
        self._connect_kafka()
        if self.producer is None:
            return  # stopped before Kafka answered
        self.connect()
        last_log = time.monotonic()
        try:
            while not self.stopping.is_set() or not self.inbox.empty():
                batch = self._next_batch()
                if batch:
                    self.forward(batch)
                if not self.stopping.is_set():
                    try:
                        self._tend_links()
                    except Exception as exc:  # noqa: BLE001 - a bug here must not stop the stream: log, go on
                        _error_with_traceback("tend_links_failed", exc)
                if time.monotonic() - last_log >= self.config.log_interval:
                    last_log = time.monotonic()
                    self._report()
        finally:
            self._shutdown()

    def _connect_kafka(self) -> None:
        """Make the producer, retrying with backoff while Kafka is unreachable (never exit for it)."""
        attempt = 0
        while self.producer is None and not self.stopping.is_set():
            try:
                # send() waits at most 10 s for metadata or buffer space: the loop keeps reporting in outages.
                self.producer = kafka_producer(self.settings, max_block_ms=10_000)
            except KafkaError as exc:
                attempt += 1
                delay = min(self.config.max_backoff, 2.0 * attempt)
                event(log, "kafka_unreachable", logging.WARNING, bootstrap=self.settings.kafka.bootstrap,
                      error=str(exc)[:200], retry_in=delay)
                self.stopping.wait(delay)

    def stop(self) -> None:
        """Ask run() to finish: take no more messages, forward and ack what was received, then return.

        The subscription stays in the broker's persistent session (no UNSUBSCRIBE): what is published
        while the bridge is down is queued for it, not dropped. Messages that arrive after stop() are
        left unacknowledged, so the broker delivers them again."""
        self.stopping.set()

    def _next_batch(self) -> list[Held]:
        try:
            batch = [self.inbox.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.config.linger
        while len(batch) < self.config.batch_max:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self.inbox.get(timeout=max(remaining, 0)) if remaining > 0 else self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def forward(self, batch: list[Held]) -> None:
        """Decode, produce and wait for Kafka (retrying what is retriable); isolate and dead-letter a
        message Kafka refuses for good; then ack to MQTT. Left unacked only when stopping mid-outage."""
        started = time.monotonic()
        try:
            if self._produce(self._encode_each([h.msg for h in batch])):
                for held in batch:  # find the message at fault: one at a time, then dead-letter it
                    self._forward_alone(held.msg)
        except Abandoned:
            self._release(batch, "stopping")
            return
        self.metrics.latency.observe(time.monotonic() - started)
        self._ack(batch)

    def _encode_each(self, msgs: list[mqtt.MQTTMessage]) -> list[Record]:
        """encode() the messages; should it raise, encode them one by one and dead-letter the one that
        raises with the error as its reason (one message is the unit of failure, never the process)."""
        try:
            return self.encode(msgs)
        except Exception:  # noqa: BLE001 - isolated below, message by message
            records: list[Record] = []
            for msg in msgs:
                try:
                    records += self.encode([msg])
                except Exception as exc:  # noqa: BLE001 - the message is kept in the dead-letter topic
                    event(log, "encode_failed", logging.ERROR, topic=msg.topic, error=repr(exc)[:300])
                    records.append(self._dead_letter(msg, f"bridge could not decode it: {exc!r}", None,
                                                     time.time_ns()))
            return records

    def _forward_alone(self, msg: mqtt.MQTTMessage) -> None:
        """Produce one message's records; if Kafka refuses one for good, dead-letter the message; if it
        refuses the dead letter too, dead-letter it without its raw bytes (size and SHA-256 kept)."""
        refused = self._produce(self._encode_each([msg]))
        if not refused:
            return
        reason = f"Kafka refused a record made from it: {refused}"
        record = self._dead_letter(msg, reason, None, time.time_ns())
        again = self._produce([record])
        if again:
            note = f"{reason}; its dead letter was refused too ({again}), so no raw bytes are kept (size and sha256 are)"
            self._produce([self._dead_letter(msg, note, None, time.time_ns(), keep_raw=False)], must=True)

    def _produce(self, records: list[Record], *, must: bool = False) -> str | None:
        """Send records and wait until Kafka acknowledged each. Retriable failures are sent again with
        exponential backoff for as long as they last; returns a description of the first record Kafka
        refused for good (None when all are in). `must`: refusals are retried too (the last resort).
        Raises Abandoned when stop() was asked while Kafka is still failing."""
        pending, refused, attempt = list(records), None, 0
        while pending:
            futures, retry = [], []
            for record in pending:
                topic, key, value, headers, ts_ms = record
                sent_at = time.monotonic()
                missing = self._missing.get(topic)
                if missing and missing[0] > sent_at and not must:
                    refused = refused or missing[1]  # absent a moment ago: do not wait for metadata again
                    continue
                try:
                    futures.append((record, self.producer.send(topic, key=key, value=value, headers=headers,
                                                               timestamp_ms=ts_ms)))
                except Exception as exc:  # noqa: BLE001 - classified: retried or refused
                    error = self._refusal(exc, topic, sent_at)
                    if error is None or must:
                        retry.append(record)
                    else:
                        refused = refused or error
            waiting_since = time.monotonic()
            while not all(f.is_done for _, f in futures):
                try:
                    self.producer.flush(timeout=5)
                except KafkaTimeoutError:
                    event(log, "kafka_waiting", logging.WARNING, unacked_records=sum(not f.is_done for _, f in futures))
                    if self.stopping.is_set():
                        raise Abandoned from None
                    if time.monotonic() - waiting_since > self.config.producer_stuck_after:
                        self._replace_producer()
                        break
            for record, future in futures:
                if not future.is_done:
                    retry.append(record)  # its producer was replaced: send it again (maybe twice in Kafka)
                elif future.failed():
                    error = self._refusal(future.exception, record[0], None)
                    if error is None or must:
                        retry.append(record)
                    else:
                        refused = refused or error
            pending = retry
            if pending:
                if self.stopping.is_set():
                    raise Abandoned
                attempt += 1
                delay = min(self.config.max_backoff, 0.5 * 2 ** min(attempt, 16))
                self.metrics.produce_retries.inc(len(pending))
                event(log, "kafka_retry", logging.WARNING, records=len(pending), attempt=attempt, retry_in=delay)
                self.stopping.wait(delay)
        return refused

    def _replace_producer(self) -> None:
        """A producer whose sends neither succeed nor fail (seen with kafka-python's idempotent producer
        after delivery timeouts in a long outage: "ProducerId set to -1", then nothing) is replaced."""
        self.metrics.producer_restarts.inc()
        event(log, "kafka_producer_replaced", logging.ERROR, stuck_for=self.config.producer_stuck_after)
        old, self.producer = self.producer, None
        try:
            old.close(timeout=0)
        except Exception as exc:  # noqa: BLE001 - the old producer is dropped either way
            event(log, "kafka_producer_close_failed", logging.WARNING, error=str(exc)[:200])
        self._connect_kafka()
        if self.producer is None:
            raise Abandoned

    def _refusal(self, exc: BaseException, topic: str, sent_at: float | None) -> str | None:
        """None when `exc` is worth retrying (Kafka away, timeouts), else what Kafka refused and why.
        A metadata timeout is a refusal when the producer did refresh the cluster's metadata during the
        send and the topic was not in it: the topic does not exist."""
        if isinstance(exc, KafkaTimeoutError) and sent_at is not None:
            metadata = self.producer._metadata  # kafka-python keeps no public view of its last refresh
            if metadata._last_successful_refresh_ms / 1000 >= sent_at and topic not in metadata.topics():
                exc = KafkaError(f"topic {topic!r} does not exist (create it: deploy/native/kafka.sh topics)")
                self._missing[topic] = (time.monotonic() + 30, f"KafkaError: {exc}")
            else:
                return None
        elif isinstance(exc, KafkaError) and exc.retriable:
            return None
        name = type(exc).__name__
        self.metrics.refused.labels(name).inc()
        event(log, "kafka_refused", logging.ERROR, topic=topic, error=f"{name}: {str(exc)[:300]}")
        return f"{name}: {str(exc)[:500]}"

    def _ack(self, batch: list[Held]) -> None:
        """Acknowledge each message on the connection it came on; an ack that cannot be sent is counted
        and logged (the broker sends that message again)."""
        failed: dict[str, int] = {}
        for held in batch:
            if held.generation != held.link.generation:
                reason = "connection_gone"
            else:
                rc = held.link.client.ack(held.msg.mid, held.msg.qos)
                reason = "" if rc == mqtt.MQTT_ERR_SUCCESS else mqtt.error_string(rc)
            if reason:
                failed[reason] = failed.get(reason, 0) + 1
        for reason, n in failed.items():
            self.metrics.ack_failed.labels(reason).inc(n)
            event(log, "mqtt_ack_failed", logging.WARNING, messages=n, reason=reason, redelivered_by="broker")
        acked = len(batch) - sum(failed.values())
        self.metrics.acked.inc(acked)
        self._totals["acked"] += acked
        self._release(batch, "")

    def _release(self, batch: list[Held], reason: str) -> None:
        """Free the window slots of a batch (acked, or left for the broker to redeliver)."""
        with self.lock:
            self.held -= len(batch)
            for held in batch:
                held.link.held -= 1
        self.metrics.inflight.dec(len(batch))
        if reason:
            self.metrics.ack_failed.labels(reason).inc(len(batch))

    def _tend_links(self) -> None:
        """Reconnect drained connections, start adoptions that are due, finish or drop adoptions."""
        now = time.monotonic()
        for link in (self.link, *self.adoptions.values()):
            with self.lock:
                drained = link.draining and link.held == 0
            if drained and not link.lost:
                event(log, "window_drained_reconnecting", link=link.name,
                      dropped_total=int(self.metrics.window_dropped._value.get()))
                link.reconnect()
        own = self.config.subscriptions
        for peer_id, same in self.peers.overlapping(self.config.client_id, own).items():
            if peer_id not in self._overlap_warned:
                self._overlap_warned.add(peer_id)
                event(log, "filters_overlap", logging.WARNING, peer=peer_id, filters=same,
                      fix="every such message reaches Kafka twice: give each bridge its own --filter, or use --shared")
        if self.restored:
            (filters, was_own), self.restored = self.restored, None
            # Filters an earlier configuration (or an adoption) left in our session: a $share one, or one
            # the current configuration has in the other form, is unsubscribed; any other stream is kept
            # (plain) and listed as taken until a live bridge of the group owns it, so a narrower
            # --filter list or another group does not drop a stream nobody else reads yet.
            plain_own = {_plain(o) for o in own}
            dropped = tuple(f for f in was_own if f not in own and (f.startswith("$share/") or f in plain_own))
            if dropped:   # an old share group's filter not covered now is kept as a plain one below
                self.link.release(dropped, listed=False)
                event(log, "old_filters_unsubscribed", filters=list(dropped))
            extra = tuple(dict.fromkeys(_plain(f) for f in filters if f not in own and f not in dropped
                                        or f in dropped and _plain(f) not in plain_own))
            if self.link.take(extra):
                event(log, "filters_restored", filters=list(extra),
                      note="kept until a live bridge of the group owns them")
        # Plain filters we took over go back once their owner is live again (its session has them), or
        # to the bridge with the lower id when two of us took the same one.
        taken = {f for f in self.link.filters if f not in own}
        # A peer whose adoption just ended may have been cut off by it (our CONNECT as the peer took its
        # session over, and unsubscribed its filters): its status counts only once it said so again.
        stale = {p for p, t in self._fresh_status_needed.items() if self.peers.updated(p) <= t}
        back = self.peers.to_give_back(self.config.client_id, taken, set(self.adoptions) | stale)
        if back:
            event(log, "filters_given_back", peers=sorted(set(back.values())), filters=sorted(back))
            self.link.release(tuple(back))
        due = self.peers.due(self.config.client_id, now, self.config.adopt_after)
        for peer_id in set(self.taking) - {p.client_id for p in due}:
            del self.taking[peer_id]
        for peer in due:
            if peer.client_id in self.adoptions or now < self._adopt_again_at.get(peer.client_id, 0.0):
                continue
            plain = tuple(f for f in peer.filters if not f.startswith("$share/"))
            missing = tuple(f for f in plain if f not in self.link.filters)
            if missing:
                # Plain filters have no other subscriber: take them over first, so nothing published from
                # now on goes only to the dead session; adopt once the broker granted the subscription.
                self.link.take(missing)
                event(log, "filters_taken_over", peer=peer.client_id, filters=list(missing))
            self.taking[peer.client_id] = plain
            if all(f in self.link.granted for f in plain):
                self.taking.pop(peer.client_id, None)
                event(log, "adopting_session", peer=peer.client_id, offline_for=now - peer.since)
                link = self.adoptions[peer.client_id] = Link(self, peer.client_id, adopted=True, filters=peer.filters)
                link.connect("adopt")
        for peer_id, link in list(self.adoptions.items()):
            with self.lock:
                idle = link.held == 0 and not link.draining
            connected = link.client.is_connected()
            if self.peers.online(peer_id) or link.lost:
                result = "peer_returned" if self.peers.online(peer_id) else "connection_lost"
            elif not connected:
                # paho gives an adoption one connect attempt (no reconnect loop): one refused while the
                # broker was away ends without a callback, so it is dropped here and tried again later
                if link.session_present is None and now - link.connect_started < ADOPT_CONNECT_TIMEOUT:
                    continue
                result = "connection_lost"
            elif link.session_present is False or (link.unsubscribed and idle
                                                    and now - link.last_message >= self.config.adopt_quiet):
                result = "drained"
            else:
                continue
            if result == "drained" and not self._clear_status(link, peer_id):
                result = "connection_lost"   # cut meanwhile (the peer is back?): look again later
            if result == "drained":   # our own link may miss the cleared status (QoS 0, or reconnecting)
                self.peers.forget(peer_id)
            link.close(end_session=result == "drained")
            del self.adoptions[peer_id]
            if link.connected_at is not None:   # we unsubscribed its session: give back only on a newer status
                self._fresh_status_needed[peer_id] = link.connected_at
            if result == "connection_lost":   # e.g. the peer took its session back: give it time to say so
                self._adopt_again_at[peer_id] = now + self.config.adopt_after
            if result == "drained" and any(f not in own for f in self.link.filters):
                self.link.refresh_will()   # our status and will list its plain filters
            self.metrics.adoptions.labels(result).inc()
            event(log, "adoption_ended", peer=peer_id, result=result, session_present=link.session_present)

    def _clear_status(self, link: Link, peer_id: str) -> bool:
        """Clear a drained peer's retained status on its own session, before that session ends: a peer
        that reconnects after this takes the session over and its "online" is not wiped. True when the
        broker confirmed it."""
        try:
            cleared = link.client.publish(status_topic(self.config.group, peer_id), b"", qos=1, retain=True)
            cleared.wait_for_publish(timeout=5)
            return cleared.is_published()
        except (RuntimeError, ValueError):   # not connected (paho raises), or the wait timed out
            return False

    def encode(self, batch: list[mqtt.MQTTMessage]) -> list[tuple]:
        """Kafka records (topic, key, value, headers, timestamp ms) for a batch: readings and dead letters.

        One message is the unit of failure. Each message is parsed on its own; the readings of all of
        them are validated together, one vectorised pass per domain, and every rejection is
        dead-lettered with its own message's bytes. Whatever else goes wrong with one message (a bug,
        a value nobody foresaw) dead-letters that message as an internal error, logged with its
        traceback, and never touches the other messages of the batch or stops the bridge."""
        kafka = self.settings.kafka
        out: list[tuple] = []
        parsed: list[MessageReadings] = []
        owners: list[tuple[mqtt.MQTTMessage, list[tuple[str, bytes]]]] = []
        window = self.settings.ingest.time_window()
        for msg in batch:
            received_at = time.time_ns()
            fmt = None
            try:
                topic = msg.topic
                headers = [("mqtt_topic", topic.encode()), ("bridge", self.config.client_id.encode())]
                info = route(topic)
                fmt = info.format if info.format != "status" else None
                if fmt is None:
                    raise PayloadError("status messages are not readings")
                self.metrics.received.labels(fmt).inc()
                raws = parse(fmt, msg.payload, info, window=window)
            except PayloadError as exc:
                out.append(self._dead_letter(msg, exc.reason, fmt, received_at))
                continue
            except Exception as exc:  # noqa: BLE001 - a bug with this message must stay with this message
                out.append(self._internal_error(msg, exc, fmt, received_at))
                continue
            parsed.append(MessageReadings(raws, fmt, None, received_at))
            owners.append((msg, headers))
        result, failed = self._validate(parsed)
        for domain, (readings, message_of) in result.batches.items():
            target = kafka.telemetry_topic(domain)
            # Record timestamp = newest event time (ms): processors seek back to open windows with it.
            for key, value, ts_ms, m in self._encoded(readings, message_of, failed):
                out.append((target, key, value, owners[m][1], ts_ms))
            forwarded = int((~np.isin(message_of, list(failed))).sum())
            self.metrics.forwarded.labels(domain).inc(forwarded)
            self._totals["forwarded"] += forwarded
        for m, exc in failed.items():
            out.append(self._internal_error(owners[m][0], exc, parsed[m].source, parsed[m].received_at,
                                            result.errors.get(m, [])))
        for m, reasons in result.errors.items():
            if m not in failed:
                out.append(self._dead_letter(owners[m][0], "; ".join(reasons), parsed[m].source,
                                             parsed[m].received_at))
        self._totals["received"] += len(batch)
        return out

    def _validate(self, parsed: list[MessageReadings]) -> tuple[Validated, dict[int, Exception]]:
        """All messages validated in one vectorised pass; if that raises, message by message, so that
        only the message that breaks validation is set aside (returned with its exception)."""
        try:
            return validate_many(parsed), {}
        except Exception as exc:  # noqa: BLE001 - fall back to isolating the message that caused it
            _error_with_traceback("validate_batch_failed", exc, messages=len(parsed))
        failed: dict[int, Exception] = {}
        parts: dict[str, list[tuple[ReadingBatch, np.ndarray]]] = {}
        errors: dict[int, list[str]] = {}
        for m, message in enumerate(parsed):
            try:
                one = validate_many([message])
            except Exception as exc:  # noqa: BLE001 - this message alone goes to the dead-letter topic
                failed[m] = exc
                continue
            for domain, (readings, _) in one.batches.items():
                parts.setdefault(domain, []).append((readings, np.full(len(readings), m, np.int64)))
            if one.errors:
                errors[m] = one.errors[0]
        batches = {d: (ReadingBatch.concat([b for b, _ in p]), np.concatenate([i for _, i in p])) for d, p in parts.items()}
        return Validated(batches, errors), failed

    @staticmethod
    def _encoded(readings: ReadingBatch, message_of: np.ndarray,
                 failed: dict[int, Exception]) -> list[tuple[bytes, bytes, int, int]]:
        """(key, value, timestamp ms, message index) per record of the batch; if encoding the batch
        raises, message by message, and a message that cannot be encoded is set aside in `failed`."""
        try:
            return [(k, v, ts, int(message_of[row])) for k, v, ts, row in readings.records(message_of)]
        except Exception:  # noqa: BLE001 - find the messages responsible, one by one
            pass
        out: list[tuple[bytes, bytes, int, int]] = []
        for m in np.unique(message_of).tolist():
            rows = np.flatnonzero(message_of == m)
            try:
                out += [(k, v, ts, m) for k, v, ts, _ in readings.take(rows).records()]
            except Exception as exc:  # noqa: BLE001 - this message becomes an internal-error dead letter
                failed.setdefault(m, exc)
        return out

    def _internal_error(self, msg: mqtt.MQTTMessage, exc: Exception, fmt: str | None, received_at: int,
                        reasons: list[str] | None = None) -> tuple:
        """A dead letter for a message that broke the bridge's own code (with any rejection reasons of its
        readings), and an ERROR log with the traceback."""
        _error_with_traceback("message_internal_error", exc, topic=_topic_of(msg)[:200])
        reason = "; ".join([f"internal error: {type(exc).__name__}: {exc}", *(reasons or [])])
        return self._dead_letter(msg, reason, fmt, received_at)

    def _dead_letter(self, msg: mqtt.MQTTMessage, reason: str, fmt: str | None, received_at: int, *,
                     keep_raw: bool = True) -> tuple:
        """A dead-letter record for one message, bounded in size (raw bytes and reason cut to the settings;
        keep_raw=False: none of the raw bytes, for when even the bounded record was refused)."""
        self.metrics.deadlettered.inc()
        self._totals["deadlettered"] += 1
        limits = self.settings.ingest
        topic = _topic_of(msg)
        record = DeadLetter.of(topic, bytes(msg.payload), reason, fmt, received_at,  # type: ignore[arg-type]
                               raw_max=limits.deadletter_raw_max if keep_raw else 0,
                               reason_max=limits.deadletter_reason_max)
        headers = [("mqtt_topic", record.topic.encode()), ("bridge", self.config.client_id.encode())]
        return self.settings.kafka.deadletter_topic, record.topic.encode(), record.model_dump_json().encode(), headers, None

    def _report(self) -> None:
        """A progress log line, and the same counters into InfluxDB for the pipeline-health wall
        (best effort: the bridge's job does not depend on InfluxDB)."""
        inflight = int(self.metrics.inflight._value.get())
        event(log, "bridge_progress", client_id=self.config.client_id, **self._totals, inflight=inflight,
              window_dropped=int(self.metrics.window_dropped._value.get()), adopting=len(self.adoptions))
        fields = ",".join(f"{k}={v}i" for k, v in {**self._totals, "inflight": inflight}.items())
        line = f"pipeline,service=bridge,instance={self.config.client_id} {fields} {time.time_ns()}"
        try:
            self._influx.write(self.settings.influx.bucket_compliance, [line])
        except Exception as exc:  # noqa: BLE001 - metrics are optional
            event(log, "metrics_write_failed", logging.DEBUG, error=str(exc)[:200])

    def _shutdown(self) -> None:
        """Planned stop: say "offline" (peers adopt our session if we stay away), leave adoptions to be
        resumed by whoever adopts next, disconnect keeping the session, flush Kafka."""
        self._report()
        for link in self.adoptions.values():
            link.close()
        info = self.link.publish_status("offline")
        try:
            info.wait_for_publish(timeout=5)
        except (RuntimeError, ValueError):
            event(log, "status_not_published", logging.WARNING, reason="not connected")
        try:
            self.producer.flush(timeout=30)
        except KafkaError as exc:  # what is unflushed was not acked: the broker redelivers it
            event(log, "kafka_flush_failed", logging.WARNING, error=str(exc)[:200])
        self.link.close()
        self.producer.close(timeout=10)
        self._influx.close()
        event(log, "bridge_stopped", client_id=self.config.client_id, **self._totals)


def _stop_loop(client: mqtt.Client) -> None:
    """paho's loop_stop(), which raises AttributeError when the network thread ends by itself between
    its check and its join (seen under load): then there is nothing left to stop."""
    try:
        client.loop_stop()
    except AttributeError:
        pass


def _plain(topic_filter: str) -> str:
    """A filter without its `$share/<group>/` prefix, if any."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter


def _topic_of(msg: mqtt.MQTTMessage) -> str:
    """The message's topic as text, even when its bytes are not UTF-8 (paho would raise)."""
    try:
        return msg.topic
    except UnicodeDecodeError:
        return msg._topic.decode("utf-8", "replace")


def _error_with_traceback(name: str, exc: Exception, **fields: object) -> None:
    """An ERROR event line, then the traceback that explains it (a bug to fix, not bad input)."""
    event(log, name, logging.ERROR, **fields, error=f"{type(exc).__name__}: {exc}"[:500])
    log.error("event=%s_traceback", name, exc_info=exc)
