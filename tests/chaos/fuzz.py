"""Point 9: seeded generated payloads (four formats, mutated, raw bytes, poison) through the live bridge.

Pass when the bridge never exits and every message is counted in Kafka: as readings in a
`telemetry.<domain>` topic or in the dead-letter topic (matched by the `mqtt_topic` header the bridge
puts on both, each message having a topic of its own).
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from kafka import TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from infra.stack import topic_specs
from simulators.publisher import Publisher
from tests.chaos.payloads import generated
from tests.chaos.pipeline import Lane, wait_ready

SEED = 20261127


def run(base: Settings, folder: Path, count: int, idle: float = 45.0) -> tuple[str, bool, str]:
    """(check name, passed, detail) for `count` generated payloads."""
    lane = Lane(f"fz{int(time.time()) % 100000}", "fuzz", base, folder, 18199, mqtt_port=20199)
    name = f"{count:,} generated payloads through the live bridge (seed {SEED})"
    try:
        lane.setup(influx=False)   # the bridge needs no InfluxDB: this check can run during its outage
        bridge = lane.start_bridge()
        wait_ready(lane)
        kinds: dict[str, str] = {}
        started = time.monotonic()
        pub = Publisher(lane.settings, client_prefix=lane.tag)
        try:
            for kind, topic, payload in generated(SEED, count, lane.tag):
                kinds[topic] = kind
                pub.publish(topic, payload)
            pub.wait(600)
        finally:
            pub.close()
        published = time.monotonic() - started
        readings, dead = _collect(lane, set(kinds), idle)
        counted = readings | dead
        missing = [t for t in kinds if t not in counted]
        by_kind = Counter(kinds[t].split(":")[0] for t in missing)
        alive = bridge.popen.poll() is None and not lane.died()
        detail = (f"published in {published:.0f} s; counted {len(counted & set(kinds)):,} of {len(kinds):,} "
                  f"({len(readings & set(kinds)):,} with readings, {len(dead & set(kinds)):,} dead-lettered); "
                  f"bridge {'alive' if alive else 'DIED: ' + ', '.join(lane.died())}")
        if missing:
            detail += f"; uncounted by kind: {dict(by_kind.most_common(6))}, e.g. {missing[0]}"
        return name, alive and not missing, detail
    except Exception as exc:  # noqa: BLE001 - the check fails with the reason
        return name, False, f"suite error: {type(exc).__name__}: {exc}"[:400]
    finally:
        lane.stop()


def _collect(lane: Lane, topics: set[str], idle: float) -> tuple[set[str], set[str]]:
    """MQTT topics seen in the lane's telemetry topics and in its dead-letter topic, read until all
    `topics` were seen or nothing new arrived for `idle` seconds."""
    kafka = lane.settings.kafka
    dl_topic = kafka.deadletter_topic
    names = [kafka.topic_prefix + name for name, _, _ in topic_specs() if name.startswith("telemetry.")]
    consumer = kafka_consumer(lane.settings, None, max_poll_records=20000)
    readings: set[str] = set()
    dead: set[str] = set()
    try:
        parts = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        last_new = time.monotonic()
        while time.monotonic() - last_new < idle and not topics <= (readings | dead):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                target = dead if tp.topic == dl_topic else readings
                for r in records:
                    header = dict(r.headers or []).get("mqtt_topic")
                    if header is not None:
                        target.add(header.decode("utf-8", "replace"))
                    last_new = time.monotonic()
    finally:
        consumer.close()
    return readings, dead
