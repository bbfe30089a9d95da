"""The ingest bridge: MQTT (QoS 1, persistent session, shared subscription) -> Kafka, nothing lost.

Delivery: a message is acknowledged to the broker (paho manual ack) only after Kafka acknowledged
every record made from it (acks=all, idempotent producer). At most `window` messages are held
unacknowledged: we ask the broker for that (MQTT v5 Receive Maximum) and also enforce it ourselves,
because Mosquitto 2.0.11 stops honouring Receive Maximum once acknowledgements flow (measured: 1,700
outstanding against a limit of 10). When the window is full, paho's network thread waits before
taking the next message off the socket, so TCP backpressure leaves the rest queued in the broker's
persistent session. When Kafka is unreachable the bridge stops acknowledging, memory stays bounded
and nothing is dropped.
Invalid messages go to the dead-letter topic with their raw bytes and the reason.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt
from influxdb_client.client.write_api import SYNCHRONOUS
from kafka import KafkaProducer
from kafka.errors import KafkaError
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from infra.clients import kafka_producer, mqtt_client, mqtt_connect
from infra.logs import event
from infra.settings import Settings
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


@dataclass
class BridgeConfig:
    """How one bridge process subscribes, batches and reports."""

    client_id: str = "bridge-1"
    group: str = "ingest"                  # shared subscription group: $share/<group>/<filter>
    filters: tuple[str, ...] = SOURCE_FILTERS
    window: int = 2000                     # unacknowledged MQTT messages in flight (Receive Maximum)
    batch_max: int = 1000                  # messages decoded and produced together
    linger: float = 0.02                   # seconds to wait for a batch to fill
    session_expiry: int = 7 * 24 * 3600    # broker keeps our session (and queued messages) this long
    metrics_port: int | None = None        # Prometheus endpoint, None: off
    log_interval: float = 10.0


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
        self.inflight = Gauge("bridge_inflight", "messages received and not yet acknowledged", registry=r)
        self.reconnects = Counter("bridge_reconnects", "MQTT reconnections", registry=r)
        self.produce_retries = Counter("bridge_produce_retries", "batches retried because Kafka failed", registry=r)
        self.latency = Histogram("bridge_produce_latency_seconds", "time from batch start to Kafka ack",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)


class Bridge:
    """One bridge process: run() until stop() (or SIGTERM through the CLI)."""

    def __init__(self, settings: Settings, config: BridgeConfig | None = None,
                 producer: KafkaProducer | None = None) -> None:
        self.settings = settings
        self.config = config or BridgeConfig()
        if self.config.batch_max > self.config.window:
            self.config.batch_max = self.config.window  # a batch can never outgrow the window
        self.metrics = BridgeMetrics()
        self.producer = producer or kafka_producer(settings)
        self.inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.window = threading.BoundedSemaphore(self.config.window)
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self._connections = 0
        self._totals = {"received": 0, "forwarded": 0, "deadlettered": 0, "acked": 0}
        self._influx = None
        self.client = mqtt_client(settings, self.config.client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)

    # -- MQTT side (paho's network thread) ---------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            event(log, "mqtt_connect_failed", logging.ERROR, reason=reason.getName())
            return
        self._connections += 1
        if self._connections > 1:
            self.metrics.reconnects.inc()
        client.subscribe([(f"$share/{self.config.group}/{f}", 1) for f in self.config.filters])
        event(log, "mqtt_connected", client_id=self.config.client_id, session_present=flags.session_present,
              window=self.config.window)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags,
                       reason: mqtt.ReasonCode, properties: Properties | None) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            event(log, "mqtt_disconnected", logging.WARNING, reason=reason.getName())

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.stopping.is_set():
            return  # not acknowledged: the broker delivers it again when the bridge is back
        # Wait for a free slot in the window: while we wait, paho reads nothing more from the socket.
        while not self.window.acquire(timeout=1.0):
            if self.stopping.is_set():
                return  # not acknowledged: the broker redelivers it to this session later
        self.metrics.inflight.inc()
        self.inbox.put(msg)

    # -- main loop ------------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect with a persistent session and the in-flight window as Receive Maximum."""
        mqtt_connect(self.client, self.settings, session_expiry=self.config.session_expiry,
                     receive_maximum=self.config.window)
        self.client.loop_start()

    def run(self) -> None:
        """Connect, then forward batches until stop(); on stop, finish what was received and exit."""
        if self.config.metrics_port:
            start_http_server(self.config.metrics_port, registry=self.metrics.registry)
        self.connect()
        last_log = time.monotonic()
        try:
            while not self.stopping.is_set() or not self.inbox.empty():
                batch = self._next_batch()
                if batch:
                    self.forward(batch)
                if time.monotonic() - last_log >= self.config.log_interval:
                    last_log = time.monotonic()
                    self._report()
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Ask run() to finish: take no more messages, forward and ack what was received, then return.

        The subscription stays in the broker's persistent session (no UNSUBSCRIBE): what is published
        while the bridge is down is queued for it, not dropped. Messages that arrive after stop() are
        left unacknowledged, so the broker delivers them again."""
        self.stopping.set()

    def _next_batch(self) -> list[mqtt.MQTTMessage]:
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

    def forward(self, batch: list[mqtt.MQTTMessage]) -> None:
        """Decode, produce and wait for Kafka; retry what failed until Kafka accepts; then ack to MQTT."""
        started = time.monotonic()
        pending = self.encode(batch)
        while pending:
            sent, unsent = [], []
            for record in pending:
                topic, key, value, headers, ts_ms = record
                try:
                    sent.append((record, self.producer.send(topic, key=key, value=value, headers=headers,
                                                            timestamp_ms=ts_ms)))
                except KafkaError:  # no metadata / buffer full while Kafka is away
                    unsent.append(record)
            while not all(f.is_done for _, f in sent):
                try:
                    self.producer.flush(timeout=5)
                except KafkaError:
                    event(log, "kafka_waiting", logging.WARNING, unacked_records=sum(not f.is_done for _, f in sent))
            # Only records whose delivery failed are sent again: resending in-flight ones would duplicate.
            pending = unsent + [record for record, f in sent if f.failed()]
            if pending:
                # Not acknowledged to MQTT: the broker keeps these and sends no more than `window`.
                self.metrics.produce_retries.inc()
                event(log, "kafka_produce_failed", logging.WARNING, records=len(pending), retry_in=1.0)
                time.sleep(1.0)
        self.metrics.latency.observe(time.monotonic() - started)
        for msg in batch:
            self.client.ack(msg.mid, msg.qos)
        self.metrics.acked.inc(len(batch))
        self.metrics.inflight.dec(len(batch))
        for _ in batch:
            self.window.release()
        self._totals["acked"] += len(batch)

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
            records = self._encoded(readings, message_of, failed)
            # Record timestamp = event time (ms): processors seek back to open windows with it.
            before = len(out)
            out.extend((target, key, value, owners[m][1], ts // 10**6)
                       for (key, value), ts, m in zip(records, readings.ts.tolist(), message_of.tolist()) if key is not None)
            self.metrics.forwarded.labels(domain).inc(len(out) - before)
            self._totals["forwarded"] += len(out) - before
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
                 failed: dict[int, Exception]) -> list[tuple[bytes | None, bytes | None]]:
        """(key, value) per reading; if encoding the batch raises, row by row, and a row that cannot be
        encoded gives (None, None) and sets its message aside in `failed`."""
        try:
            return list(readings.records())
        except Exception:  # noqa: BLE001 - find the rows responsible, one by one
            pass
        out: list[tuple[bytes | None, bytes | None]] = []
        for row, m in enumerate(message_of.tolist()):
            try:
                out.append(next(readings.take(np.array([row])).records()))
            except Exception as exc:  # noqa: BLE001 - this row's message becomes an internal-error dead letter
                failed.setdefault(m, exc)
                out.append((None, None))
        return out

    def _internal_error(self, msg: mqtt.MQTTMessage, exc: Exception, fmt: str | None, received_at: int,
                        reasons: list[str] | None = None) -> tuple:
        """A dead letter for a message that broke the bridge's own code (with any rejection reasons of its
        readings), and an ERROR log with the traceback."""
        _error_with_traceback("message_internal_error", exc, topic=_topic_of(msg)[:200])
        reason = "; ".join([f"internal error: {type(exc).__name__}: {exc}", *(reasons or [])])
        return self._dead_letter(msg, reason, fmt, received_at)

    def _dead_letter(self, msg: mqtt.MQTTMessage, reason: str, fmt: str | None, received_at: int) -> tuple:
        """A dead-letter record for one message, bounded in size (raw bytes and reason cut to the settings)."""
        self.metrics.deadlettered.inc()
        self._totals["deadlettered"] += 1
        limits = self.settings.ingest
        topic = _topic_of(msg)
        record = DeadLetter.of(topic, bytes(msg.payload), reason, fmt, received_at,  # type: ignore[arg-type]
                               raw_max=limits.deadletter_raw_max, reason_max=limits.deadletter_reason_max)
        headers = [("mqtt_topic", record.topic.encode()), ("bridge", self.config.client_id.encode())]
        return self.settings.kafka.deadletter_topic, record.topic.encode(), record.model_dump_json().encode(), headers, None

    def _report(self) -> None:
        """A progress log line, and the same counters into InfluxDB for the pipeline-health wall
        (best effort: the bridge's job does not depend on InfluxDB)."""
        inflight = int(self.metrics.inflight._value.get())
        event(log, "bridge_progress", client_id=self.config.client_id, **self._totals, inflight=inflight)
        fields = ",".join(f"{k}={v}i" for k, v in {**self._totals, "inflight": inflight}.items())
        line = f"pipeline,service=bridge,instance={self.config.client_id} {fields} {time.time_ns()}"
        try:
            if self._influx is None:
                from infra.clients import influx_client

                self._influx = influx_client(self.settings, timeout_ms=5000).write_api(write_options=SYNCHRONOUS)
            self._influx.write(self.settings.influx.bucket_compliance, record=line)
        except Exception as exc:  # noqa: BLE001 - metrics are optional
            event(log, "metrics_write_failed", logging.DEBUG, error=str(exc)[:200])

    def _shutdown(self) -> None:
        self._report()
        self.producer.flush(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()
        self.producer.close(timeout=10)
        event(log, "bridge_stopped", client_id=self.config.client_id, **self._totals)


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
