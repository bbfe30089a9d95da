"""Hostile payloads against the live bridge (real Mosquitto and Kafka): each costs only its own message,
dead-lettered with a reason and a bounded size, and the bridge keeps forwarding and exits cleanly. (Payloads
above the broker's max_packet_size never reach the bridge: see test_bridge.py.)"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from infra.settings import Settings
from simulators.publisher import Publisher
from tests.helpers import read_topic, readings, start, stop, values

pytestmark = pytest.mark.integration


def test_hostile_numbers_and_a_large_payload_are_dead_lettered_and_good_readings_pass(
        settings: Settings, tmp_path: Path) -> None:
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
    dead = [d for d in values(read_topic(settings, settings.kafka.deadletter_topic, expect=len(hostile), timeout=180))
            if d["topic"].startswith(f"city/air/{tag}-site/")]
    good = [r for r in readings(read_topic(settings, settings.kafka.telemetry_topic("air"), expect=10, timeout=60))
            if r["site"] == f"{tag}-site"]
    assert proc.poll() is None, (tmp_path / "bridge.log").read_text()[-2000:]
    assert stop(proc, timeout=120) == 0
    assert sorted(r["sensor_id"] for r in good) == sorted(f"good-{i}" for i in range(10))
    by_name = {d["topic"].split("/")[3]: d for d in dead}
    assert set(by_name) == set(hostile)
    assert "looks like epoch milliseconds" in by_name["ms"]["reason"]
    assert "in the future" in by_name["far"]["reason"]
    assert "overflowed to infinity" in by_name["inf"]["reason"]
    assert "outside the 64-bit integer range" in by_name["big"]["reason"]
    assert "seq must be a non-negative integer" in by_name["seq"]["reason"]
    assert by_name["huge"]["raw_size"] == len(hostile["huge"]) and by_name["huge"]["raw_truncated"]
    assert len(json.dumps(by_name["huge"])) < 100_000
