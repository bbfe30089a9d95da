"""Hostile payloads against the live bridge (real Mosquitto and Kafka): each costs only its own message,
dead-lettered with a reason and a bounded size, and the bridge keeps forwarding and exits cleanly. A
payload above the broker's max_packet_size (256 KiB) never reaches the bridge: Mosquitto drops the
sender's connection."""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from infra.clients import mqtt_client, mqtt_connect
from infra.settings import Settings
from simulators.publisher import Publisher
from tests.helpers import read_topic, start, stop, values

pytestmark = pytest.mark.integration


def refused_by_broker(settings: Settings, topic: str, payload: bytes) -> mqtt.ReasonCode | None:
    """Publish `payload` on a connection of its own; the reason the broker closed it (None: it stayed up)."""
    client = mqtt_client(settings, f"oversize-{uuid.uuid4().hex[:6]}", username="air", reconnect=False)
    connected, closed, reason = threading.Event(), threading.Event(), []
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.on_disconnect = lambda c, u, f, rc, p: (reason.append(rc), closed.set())
    mqtt_connect(client, settings)
    client.loop_start()
    try:
        assert connected.wait(15), "could not connect as the air account"
        client.publish(topic, payload, qos=1)
        closed.wait(30)
    finally:
        client.loop_stop()
    return reason[0] if reason else None


def test_hostile_numbers_and_oversized_payloads_are_dead_lettered_and_good_readings_pass(settings: Settings,
                                                                                         tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    ts = int(time.time()) - 600
    hostile = {
        "ms": b'{"ts": %d, "values": {"pm25": 1}}' % (ts * 1000),
        "far": b'{"ts": "9999-12-31T23:59:59Z", "values": {"pm25": 1}}',
        "inf": b'{"ts": %d, "values": {"pm25": 1e309}}' % ts,
        "big": b'{"ts": %d, "values": {"pm25": %s}}' % (ts, b"7" * 80),
        "seq": b'{"ts": %d, "seq": -1180591620717411303424, "values": {"pm25": 1}}' % ts,
        "huge": b'{"ts": %d, "values": {"pm25": "' % ts + b"x" * (200 * 1024) + b'"}}',   # under the broker's limit
    }
    proc = start(settings, "bridge", "--client-id", f"h-{tag}", "--group", f"h{tag}", "--session-expiry", "120",
                 "--metrics-port", "0", log=tmp_path / "bridge.log")
    time.sleep(15)  # imports take seconds on a loaded 2-core box; the subscription must exist before we publish
    pub = Publisher(settings)
    for i in range(5):
        pub.publish(f"city/air/{tag}-site/good-{i}/up", json.dumps({"ts": ts, "values": {"pm25": 30 + i}}).encode())
    for name, payload in hostile.items():
        pub.publish(f"city/air/{tag}-site/{name}/up", payload)
    for i in range(5, 10):
        pub.publish(f"city/air/{tag}-site/good-{i}/up", json.dumps({"ts": ts, "values": {"pm25": 30 + i}}).encode())
    pub.wait()
    pub.close()
    closed = refused_by_broker(settings, f"city/air/{tag}-site/tenmb/up", b"x" * (10 * 1024 * 1024))
    assert closed is not None, "Mosquitto accepted a 10 MB packet (max_packet_size not in force)"
    dead = [d for d in values(read_topic(settings, settings.kafka.deadletter_topic, expect=len(hostile), timeout=180))
            if d["topic"].startswith(f"city/air/{tag}-site/")]
    good = [r for r in values(read_topic(settings, settings.kafka.telemetry_topic("air"), expect=10, timeout=60))
            if r["site"] == f"{tag}-site"]
    assert proc.poll() is None, (tmp_path / "bridge.log").read_text()[-2000:]
    assert stop(proc, timeout=120) == 0
    assert sorted(r["sensor_id"] for r in good) == sorted(f"good-{i}" for i in range(10))
    by_name = {d["topic"].split("/")[3]: d for d in dead}
    assert set(by_name) == set(hostile)   # nothing of the 10 MB publish reached the bridge
    assert "looks like epoch milliseconds" in by_name["ms"]["reason"]
    assert "in the future" in by_name["far"]["reason"]
    assert "overflowed to infinity" in by_name["inf"]["reason"]
    assert "outside the 64-bit integer range" in by_name["big"]["reason"]
    assert "seq must be a non-negative integer" in by_name["seq"]["reason"]
    assert by_name["huge"]["raw_size"] == len(hostile["huge"]) and by_name["huge"]["raw_truncated"]
    assert len(json.dumps(by_name["huge"])) < 100_000
