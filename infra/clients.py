"""Connected clients for the three services, built from Settings: one place that knows how to connect."""
from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from influxdb_client import InfluxDBClient
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import KafkaError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from infra.logs import event
from infra.settings import Settings

log = logging.getLogger("smartcity.kafka")


def mqtt_client(
    settings: Settings,
    client_id: str = "",
    *,
    username: str | None = None,
    manual_ack: bool = False,
    reconnect: bool = True,
) -> mqtt.Client:
    """An MQTT v5 client with credentials and (when configured) TLS set, not yet connected;
    `reconnect=False`: its network loop ends when the connection is lost instead of reconnecting."""
    cfg = settings.mqtt
    user = username or cfg.username
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
        reconnect_on_failure=reconnect,
    )
    password = cfg.password_for(user)
    client.username_pw_set(user, password.get_secret_value() if password else None)
    if cfg.tls:
        client.tls_set(ca_certs=str(cfg.ca_path()), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def mqtt_connect(client: mqtt.Client, settings: Settings, *, session_expiry: int = 0,
                 receive_maximum: int | None = None, wait: bool = True) -> None:
    """Connect; `session_expiry` > 0 asks for a persistent session (kept that many seconds offline, and
    resumed: clean_start is off), `receive_maximum` limits the unacknowledged QoS 1 messages the broker
    may send us (Mosquitto 2.0.11 stops honouring it once acknowledgements flow: bound yourself too).
    `wait=False` only prepares the connection: the network loop (loop_start) connects, retrying while
    the broker is unreachable."""
    props = Properties(PacketTypes.CONNECT)
    if session_expiry:
        props.SessionExpiryInterval = session_expiry
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    port = settings.mqtt.tls_port if settings.mqtt.tls else settings.mqtt.port
    (client.connect if wait else client.connect_async)(
        settings.mqtt.host,
        port,
        keepalive=settings.mqtt.keepalive,
        clean_start=session_expiry == 0,
        properties=props,
    )


def kafka_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A producer that loses nothing: acks=all, idempotent, batched and compressed (lz4: cheap on CPU)."""
    options: dict[str, Any] = dict(
        bootstrap_servers=settings.kafka.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,
        compression_type="lz4",
        max_in_flight_requests_per_connection=5,
        retries=2**31 - 1,
        delivery_timeout_ms=120_000,
        request_timeout_ms=30_000,
    )
    options.update(overrides)
    return KafkaProducer(**options)


# kafka-python releases whose group coordinator `fix_leader_rejoin` was read and tested against
# (tests/integration/test_kafka_client.py). 3.0.0-3.0.8 never fetch partitions kept across a rebalance.
REJOIN_FIX_VERIFIED = ("3.0.12",)


def fix_leader_rejoin() -> bool:
    """Make a group leader's rejoin on changed metadata stick, as the Java client does since KAFKA-9815.

    kafka-python 3.0.12's leader notices new partitions (or topics appearing after a join on empty
    metadata) only by comparing two snapshots and never sets `rejoin_needed`; the join then runs on
    the IO thread, and if it completes between two polls, its own assignment makes the snapshots
    equal, nothing collects the result and the member stays REBALANCING for good (no heartbeat, no
    error). Requesting the rejoin on the mismatch keeps it pending until a join is applied. Returns
    whether the fix is in place; only on verified versions (SMARTCITY_KAFKA_STOCK_REJOIN=1: off)."""
    import kafka
    from kafka.coordinator.consumer import ConsumerCoordinator

    if getattr(ConsumerCoordinator.need_rejoin, "smartcity_fix", False):
        return True
    if os.environ.get("SMARTCITY_KAFKA_STOCK_REJOIN") == "1":
        return False
    if kafka.__version__ not in REJOIN_FIX_VERIFIED:
        event(log, "kafka_rejoin_fix_skipped", logging.WARNING, version=kafka.__version__,
              verified=",".join(REJOIN_FIX_VERIFIED),
              fix="pin kafka-python to a verified version (pyproject.toml) or re-verify the fix for this one")
        return False
    stock = ConsumerCoordinator.need_rejoin

    def need_rejoin(self: ConsumerCoordinator) -> bool:
        if (self._subscription.partitions_auto_assigned() and not self._auto_assign_all_partitions()
                and ((self._assignment_snapshot is not None and self._assignment_snapshot != self._metadata_snapshot)
                     or (self._joined_subscription is not None
                         and self._joined_subscription != self._subscription.subscription))):
            self.request_rejoin()
        return stock(self)

    need_rejoin.smartcity_fix = True  # type: ignore[attr-defined]
    ConsumerCoordinator.need_rejoin = need_rejoin  # type: ignore[method-assign]
    return True


ASSIGNORS = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor,
             "cooperative-sticky": CooperativeStickyAssignor}


def kafka_consumer(settings: Settings, group_id: str | None, *topics: str, **overrides: Any) -> KafkaConsumer:
    """A consumer that commits only when told to (offsets follow what is safely downstream), with
    kafka-python's leader rejoin fixed (`fix_leader_rejoin`)."""
    fix_leader_rejoin()
    options: dict[str, Any] = dict(
        bootstrap_servers=settings.kafka.bootstrap,
        partition_assignment_strategy=[ASSIGNORS[settings.kafka.assignment]],
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    options.update(overrides)
    return KafkaConsumer(*topics, **options)


def subscribe_when_known(consumer: KafkaConsumer, topics: list[str], listener: Any,
                         stopping: threading.Event) -> bool:
    """Subscribe once the metadata knows every topic's partitions (False: stopped while waiting).

    kafka-python 3.0.12 can stall for good in the rejoin that follows a first join made before the
    topics' metadata arrived (seen with freshly created topics; RebalanceWatch catches the stalls this
    does not prevent); a missing topic is logged with the fix."""
    delay = 0.2
    while True:
        try:
            missing, error = [t for t in topics if not consumer.partitions_for_topic(t)], ""
        except (KafkaError, OSError) as exc:   # Kafka away: wait for it like for a missing topic
            missing, error = topics, f"{type(exc).__name__}: {str(exc)[:200]}"
        if not missing:
            consumer.subscribe(topics, listener=listener)
            return True
        if delay >= 5:
            event(log, "topics_unknown", logging.WARNING, topics=",".join(missing), error=error or "none",
                  fix="start Kafka and create the topics: deploy/native/kafka.sh topics")
        if stopping.wait(delay):
            return False
        delay = min(delay * 2, 30.0)


class RebalanceWatch(ConsumerRebalanceListener):
    """Passes a consumer's rebalance callbacks on and notices a rebalance that never ends: kafka-python
    3.0.12 can stall in a rejoin for good (no assignment, no error); the owner then replaces the consumer."""

    def __init__(self, inner: ConsumerRebalanceListener, stall_after: float = 12.0) -> None:
        self.inner, self.stall_after = inner, stall_after
        self.pending_since: float | None = time.monotonic()   # the first join counts too

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.pending_since = time.monotonic()
        self.inner.on_partitions_revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.pending_since = None
        self.inner.on_partitions_assigned(assigned)

    def stalled(self) -> bool:
        """A rebalance began more than `stall_after` seconds ago and has not assigned anything since."""
        return self.pending_since is not None and time.monotonic() - self.pending_since > self.stall_after


def influx_client(settings: Settings, timeout_ms: int = 30_000) -> InfluxDBClient:
    """An InfluxDB 2.x client (queries, buckets) for the configured org, with the service's own read-only
    token when `influx.service` is set (SMARTCITY_INFLUX__SERVICE), else the operator token; the
    pipeline writes through infra.influxwrite instead (a write-only credential)."""
    cfg = settings.influx
    return InfluxDBClient(url=cfg.url, token=cfg.token_value(), org=cfg.org, timeout=timeout_ms)
