"""The ingest bridge against the real Mosquitto and Kafka: nothing lost, nothing unauthorised."""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from infra.clients import mqtt_client, mqtt_connect
from infra.settings import Settings
from infra.stack import NATIVE
from simulators.publisher import Publisher
from tests.helpers import read_topic, start, stop, values

pytestmark = pytest.mark.integration
BASE_TS = int(time.time()) - 2 * 86400  # two days ago: never "in the future"


def message(i: int, tag: str) -> tuple[str, bytes, tuple[str, int]]:
    """Message i of a mixed-format stream: (topic, payload, (sensor_id, ts ns) it must produce)."""
    ts = BASE_TS + i
    kind = i % 4
    if kind == 0:
        sensor = f"{tag}-n{i % 20}"
        return (f"city/air/{tag}-site/{sensor}/up",
                json.dumps({"ts": ts, "seq": i, "values": {"pm25": 20 + i % 50, "pm10": 40}}).encode(),
                (sensor, ts * 10**9))
    if kind == 1:
        sensor = f"{tag}-s{i % 20}"
        return (f"city/seawater/{tag}-bay/{sensor}/senml",
                json.dumps([{"bn": f"{sensor}/", "bt": ts, "n": "ph", "v": 8.1},
                            {"n": "dissolved_oxygen", "u": "mg/L", "v": 6.5}]).encode(),
                (sensor, ts * 10**9))
    if kind == 2:
        device = f"{tag}-t{i % 20}"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
        return (f"v3/laoshan-air-lora@ttn/devices/{device}/up",
                json.dumps({"end_device_ids": {"device_id": device,
                                               "application_ids": {"application_id": "laoshan-air-lora"}},
                            "received_at": stamp,
                            "uplink_message": {"f_cnt": i, "decoded_payload": {"pm2_5": 31, "temp": 12.5},
                                               "rx_metadata": [{"time": stamp}], "received_at": stamp}}).encode(),
                (device, ts * 10**9))
    eui = f"{uuid.uuid5(uuid.NAMESPACE_OID, tag + str(i % 20)).hex[:16]}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    return ("application/fire-app/device/" + eui + "/event/up",
            json.dumps({"time": stamp, "fCnt": i,
                        "deviceInfo": {"devEui": eui, "deviceProfileName": "laoshan-fire-weather",
                                       "tags": {"site": f"{tag}-zone"}},
                        "object": {"air_temp": 18.0, "rh": 35, "wind_kmh": 12, "rain_mm": 0}}).encode(),
            (eui, ts * 10**9))


def malformed(i: int, tag: str) -> tuple[str, bytes]:
    kinds = [b"\xff\xfe not utf-8", b'{"ts": 1, "values": ', b'{"values": {"pm25": 3}}',
             json.dumps({"ts": BASE_TS, "values": {"pm25": -50}}).encode(),
             json.dumps({"ts": BASE_TS, "values": {"bogus": 1}}).encode()]
    return f"city/air/{tag}-bad/b{i}/up", kinds[i % len(kinds)]


def publish(settings: Settings, tag: str, n: int, *, malformed_too: int = 0) -> set[tuple[str, int]]:
    """Publish messages 0..n-1 of the mixed stream (and some malformed ones); returns the readings
    (sensor, ts) that must reach Kafka."""
    pub = Publisher(settings)
    expected = set()
    for i in range(n):
        topic, payload, key = message(i, tag)
        pub.publish(topic, payload)
        expected.add(key)
    for i in range(malformed_too):
        pub.publish(*malformed(i, tag))
    pub.wait()
    pub.close()
    return expected


def telemetry_records(settings: Settings, expect: int, domains=("air", "seawater", "fire")) -> list[dict]:
    per = {d: values(read_topic(settings, settings.kafka.telemetry_topic(d), expect=0, idle=2)) for d in domains}
    return [v for d in domains for v in per[d]]


def keys(records: list[dict]) -> Counter:
    return Counter((r["sensor_id"], r["ts"]) for r in records)


def wait_for_count(settings: Settings, expected: set, timeout: float = 180) -> Counter:
    deadline = time.monotonic() + timeout
    while True:
        seen = keys(telemetry_records(settings, len(expected)))
        if expected <= set(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(2)


def bridge(settings: Settings, tmp_path: Path, client_id: str, group: str, *extra: str):
    return start(settings, "bridge", "--client-id", client_id, "--group", group, "--session-expiry", "120",
                 "--metrics-port", "0", *extra, log=tmp_path / f"{client_id}.log")


def test_valid_messages_all_reach_kafka_and_malformed_ones_the_deadletter_topic(settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}")
    time.sleep(2)
    expected = publish(settings, tag, 10_000, malformed_too=1_000)
    seen = wait_for_count(settings, expected)
    dead = values(read_topic(settings, settings.kafka.deadletter_topic, expect=1000, idle=3))
    assert stop(proc) == 0
    assert set(seen) == expected and sum(seen.values()) == 10_000
    assert len(dead) == 1000
    assert all(d["reason"] and d["raw_b64"] and d["topic"].startswith(f"city/air/{tag}-bad/") for d in dead)
    reasons = Counter(re.sub(r"\d+", "N", d["reason"]).split(":")[0] for d in dead)
    assert len(reasons) >= 4, reasons


def test_sigkill_mid_stream_loses_nothing_and_reports_duplicates(settings: Settings, tmp_path: Path, record_property) -> None:
    tag = uuid.uuid4().hex[:6]
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}")
    time.sleep(2)
    pub = Publisher(settings)
    expected = set()
    msgs = [message(i, tag) for i in range(20_000)]

    def publish_all() -> None:
        for topic, payload, key in msgs:
            pub.publish(topic, payload)
            expected.add(key)
        pub.wait()

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    while pub.acked < 6000:
        time.sleep(0.05)
    proc.kill()  # SIGKILL mid-stream
    proc.wait()
    time.sleep(1)
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}")  # same client id: same broker session
    publisher.join()
    pub.close()
    seen = wait_for_count(settings, expected)
    assert stop(proc) == 0
    missing = expected - set(seen)
    duplicates = sum(seen.values()) - len(seen)
    record_property("duplicates_after_sigkill", duplicates)
    print(f"\nSIGKILL test: {len(expected)} published, {len(seen)} distinct in Kafka, {duplicates} duplicates")
    assert not missing, f"{len(missing)} messages lost"
    assert duplicates <= 2 * 2000  # at most what was in flight (window) when the bridge died, twice


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def test_kafka_outage_loses_nothing_and_memory_stays_bounded(settings: Settings, tmp_path: Path, record_property) -> None:
    import subprocess

    tag = uuid.uuid4().hex[:6]
    window = 500
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}", "--window", str(window), "--metrics-port", "19311")
    time.sleep(2)
    pub = Publisher(settings)
    expected = set()
    stop_flag = threading.Event()
    inflight_seen, rss_seen = [], []

    def publish_stream() -> None:
        i = 0
        while not stop_flag.is_set():
            topic, payload, key = message(i, tag)
            pub.publish(topic, payload)
            expected.add(key)
            i += 1
            if i % 100 == 0:
                time.sleep(0.05)  # ~2,000 messages/s
        pub.wait(300)

    publisher = threading.Thread(target=publish_stream)
    publisher.start()
    time.sleep(3)
    subprocess.run([str(NATIVE / "kafka.sh"), "stop"], check=True, capture_output=True)
    outage = time.monotonic()
    while time.monotonic() - outage < 10:
        inflight_seen.append(_metric(19311, "bridge_inflight"))
        rss_seen.append(_rss_mb(proc.pid))
        time.sleep(0.5)
    subprocess.run([str(NATIVE / "kafka.sh"), "start"], check=True, capture_output=True)
    time.sleep(3)
    stop_flag.set()
    publisher.join()
    pub.close()
    seen = wait_for_count(settings, expected, timeout=300)
    assert stop(proc) == 0
    record_property("max_inflight_during_outage", max(inflight_seen))
    record_property("max_rss_mb_during_outage", max(rss_seen))
    print(f"\nKafka outage: {len(expected)} published, {len(set(seen))} in Kafka, max in-flight "
          f"{max(inflight_seen):.0f} (window {window}), max RSS {max(rss_seen):.0f} MB")
    assert expected <= set(seen), f"{len(expected - set(seen))} messages lost"
    assert max(inflight_seen) <= window
    assert max(rss_seen) < 400


def test_two_bridges_on_one_shared_subscription_split_the_stream_without_overlap(settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    procs = [bridge(settings, tmp_path, f"b{n}-{tag}", f"g{tag}") for n in (1, 2)]
    time.sleep(3)
    expected = publish(settings, tag, 8_000)
    wait_for_count(settings, expected)
    by_bridge: dict[str, Counter] = {}
    for d in ("air", "seawater", "fire"):
        for r in read_topic(settings, settings.kafka.telemetry_topic(d), expect=0, idle=2):
            v = json.loads(r.value)
            origin = dict(r.headers)["bridge"].decode()
            by_bridge.setdefault(origin, Counter())[(v["sensor_id"], v["ts"])] += 1
    for p in procs:
        assert stop(p) == 0
    one, two = by_bridge.get(f"b1-{tag}", Counter()), by_bridge.get(f"b2-{tag}", Counter())
    assert set(one) | set(two) == expected
    assert not set(one) & set(two), "a message was forwarded by both bridges"
    assert one and two, "one bridge got nothing: the subscription was not shared"
    assert sum(one.values()) + sum(two.values()) == len(expected)


def test_bridge_forwards_over_the_tls_listener(settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}", "--tls")
    time.sleep(2)
    pub = Publisher(settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"tls": True})}))
    topic, payload, key = message(0, tag)
    pub.publish(topic, payload)
    pub.wait()
    pub.close()
    seen = wait_for_count(settings, {key}, timeout=60)
    assert stop(proc) == 0
    assert key in seen


def test_anonymous_client_is_refused_by_the_broker(settings: Settings) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    result: list[mqtt.ReasonCode] = []
    done = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: (result.append(reason), done.set())
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    assert done.wait(10)
    client.loop_stop()
    assert result[0].is_failure and result[0].getName() in ("Not authorized", "Bad user name or password")


def test_device_publishing_outside_its_domain_is_refused_and_never_delivered(settings: Settings) -> None:
    tag = uuid.uuid4().hex[:6]
    got: list[str] = []
    sub = mqtt_client(settings, username="bridge")
    sub.on_message = lambda c, u, m: got.append(m.topic)
    mqtt_connect(sub, settings)
    sub.loop_start()
    sub.subscribe("city/+/+/+/up", qos=1)
    time.sleep(1)
    reasons: list[mqtt.ReasonCode] = []
    done = threading.Event()
    device = mqtt_client(settings, username="air")
    device.on_publish = lambda c, u, mid, reason, p: (reasons.append(reason), done.set())
    mqtt_connect(device, settings)
    device.loop_start()
    time.sleep(0.5)
    device.publish(f"city/parking/{tag}/lot/up", b'{"ts": 1, "values": {}}', qos=1)
    assert done.wait(10)
    time.sleep(1)
    for c in (device, sub):
        c.disconnect()
        c.loop_stop()
    assert reasons[0].getName() == "Not authorized"
    assert not [t for t in got if tag in t]


def test_messages_published_while_the_bridge_is_stopped_are_forwarded_after_restart(settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}")
    time.sleep(2)
    assert stop(proc) == 0  # SIGTERM: a planned restart
    expected = publish(settings, tag, 2_000)
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}")
    seen = wait_for_count(settings, expected, timeout=120)
    assert stop(proc) == 0
    assert expected <= set(seen), f"{len(expected - set(seen))} messages published during the restart were lost"
