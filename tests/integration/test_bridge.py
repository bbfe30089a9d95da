"""The ingest bridge against the real Mosquitto and Kafka: nothing lost, nothing unauthorised.

The bridge needs only Mosquitto and Kafka, so these tests do too. Faults (a Kafka outage, a broker
restart, the 256 KiB message limit of this branch's broker config) are injected into PRIVATE instances
started from this checkout on free ports with their own state folders, never into the shared ones.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from kafka.admin import KafkaAdminClient

from infra.clients import kafka_producer, mqtt_client, mqtt_connect
from infra.settings import Settings, stack_dir
from infra.stack import NATIVE, create_topics, delete_topics
from ingest.bridge import Bridge, BridgeConfig
from schemas.batch import record_readings
from simulators.publisher import Publisher
from tests.helpers import read_topic, readings, start, stop, values

pytestmark = pytest.mark.integration
BASE_TS = int(time.time()) - 2 * 86400  # two days ago: never "in the future"
OUTAGE_S = float(os.environ.get("SMARTCITY_TEST_KAFKA_OUTAGE_S", "50"))  # > 1.5 x keepalive (30 s)
OUTAGE_RATE = float(os.environ.get("SMARTCITY_TEST_KAFKA_OUTAGE_RATE", "500"))  # messages/s offered, at most


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateService:
    """A Mosquitto or Kafka of our own: this checkout's deploy script and config, free ports, a temp
    state folder; same MQTT accounts, passwords and CA as the shared stack."""

    def __init__(self, script: str, root: Path, env: dict[str, str]) -> None:
        self.script, self.root = str(NATIVE / script), root
        self.env = {**os.environ, "SMARTCITY_STACK_DIR": str(root), **env}
        shutil.copytree(stack_dir() / "secrets", root / "secrets", dirs_exist_ok=True)
        shared_certs = stack_dir() / "mosquitto" / "certs"
        if shared_certs.is_dir():
            shutil.copytree(shared_certs, root / "mosquitto" / "certs", dirs_exist_ok=True)

    def run(self, action: str) -> None:
        proc = subprocess.run([self.script, action], env=self.env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{self.script} {action} failed:\n{proc.stderr[-3000:]}"


def _state_dir() -> Path:
    """A state folder the broker's own user can reach (pytest's tmp folders are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="smartcity-bridge-test-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def broker() -> Iterator[PrivateService]:
    """A private Mosquitto with this branch's broker config (ACL, limits); the tests restart it."""
    port = _free_port()
    svc = PrivateService("mosquitto.sh", _state_dir(),
                         {"SMARTCITY_MQTT_PORT": str(port), "SMARTCITY_MQTT_TLS_PORT": str(_free_port())})
    svc.port = port  # type: ignore[attr-defined]
    svc.run("start")
    yield svc
    svc.run("stop")
    shutil.rmtree(svc.root, ignore_errors=True)


@pytest.fixture(scope="module")
def private_kafka() -> Iterator[PrivateService]:
    """A private Kafka, for outages."""
    port = _free_port()
    svc = PrivateService("kafka.sh", _state_dir(),
                         {"SMARTCITY_KAFKA_PORT": str(port), "SMARTCITY_KAFKA_CONTROLLER_PORT": str(_free_port()),
                          "SMARTCITY_KAFKA_HEAP": "512m"})
    svc.bootstrap = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    svc.run("start")
    yield svc
    svc.run("stop")
    shutil.rmtree(svc.root, ignore_errors=True)


@pytest.fixture
def settings(broker: PrivateService) -> Iterator[Settings]:
    """Settings for the private broker and the shared Kafka (started when down), with this test's own
    Kafka topics (prefixed), removed afterwards. InfluxDB is not needed by the bridge."""
    base = Settings()
    if not _port_open(int(base.kafka.bootstrap.rsplit(":", 1)[1])):
        subprocess.run([str(NATIVE / "kafka.sh"), "start"], check=True, capture_output=True)
    isolated = base.model_copy(update={
        "mqtt": base.mqtt.model_copy(update={"port": broker.port, "tls_port": int(broker.env["SMARTCITY_MQTT_TLS_PORT"])}),  # type: ignore[attr-defined]
        "kafka": base.kafka.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})})
    created = create_topics(isolated)
    yield isolated
    admin = KafkaAdminClient(bootstrap_servers=isolated.kafka.bootstrap)
    existing = set(admin.list_topics())  # a test may have deleted one
    admin.close()
    delete_topics(isolated, [t for t in created if t in existing])


def message(i: int, tag: str) -> tuple[str, bytes, tuple[str, int]]:
    """Message i of a mixed-format stream: (topic, payload, (sensor_id, ts ns) it must produce).
    Timestamps advance 1 s per message and wrap after 150,000 (never in the future; long runs give
    each lap its own sensors)."""
    lap, ts = divmod(i, 150_000)
    ts += BASE_TS
    if lap:
        tag = f"{tag}l{lap}"
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


def telemetry_records(settings: Settings, expect: int, domains: tuple[str, ...] = ("air", "seawater", "fire")) -> list[dict]:
    per = {d: readings(read_topic(settings, settings.kafka.telemetry_topic(d), expect=0, idle=2)) for d in domains}
    return [v for d in domains for v in per[d]]


def keys(records: list[dict]) -> Counter:
    return Counter((r["sensor_id"], r["ts"]) for r in records)


def wait_for_count(settings: Settings, expected: set, timeout: float = 180,
                   domains: tuple[str, ...] = ("air", "seawater", "fire")) -> Counter:
    deadline = time.monotonic() + timeout
    while True:
        seen = keys(telemetry_records(settings, len(expected), domains))
        if expected <= set(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(2)


STARTED: list[subprocess.Popen] = []   # bridge processes of the running test, killed if it fails


@pytest.fixture(autouse=True)
def _reap_bridges() -> Iterator[None]:
    """A failing test must not leave its bridges running (they would reconnect to a broker that is gone)."""
    yield
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    STARTED.clear()


def bridge(settings: Settings, tmp_path: Path, client_id: str, group: str, *extra: str) -> subprocess.Popen:
    """A `smartcity bridge` process, returned once it has connected and subscribed (its log says so)."""
    log = tmp_path / f"{client_id}.log"
    offset = log.stat().st_size if log.exists() else 0
    proc = start(settings, "bridge", "--client-id", client_id, "--group", group, "--session-expiry", "120",
                 "--metrics-port", "0", *extra, log=log)
    STARTED.append(proc)
    deadline = time.monotonic() + 60
    while "event=mqtt_connected" not in log.read_bytes()[offset:].decode(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, f"bridge did not connect: {log.read_text()[-2000:]}"
        time.sleep(0.2)
    time.sleep(0.5)  # SUBACK
    return proc


def test_valid_messages_all_reach_kafka_and_malformed_ones_the_deadletter_topic(settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}")
    time.sleep(2)
    expected = publish(settings, tag, 10_000, malformed_too=1_000)
    seen = wait_for_count(settings, expected)
    dead = values(read_topic(settings, settings.kafka.deadletter_topic, expect=1000, idle=3))
    assert stop(proc) == 0
    duplicates = sum(seen.values()) - len(seen)
    print(f"\n{len(expected)} valid published, {len(seen)} distinct in Kafka, {duplicates} duplicates")
    # At least once: a reconnect after a full window may bring a message twice (InfluxDB is idempotent).
    assert set(seen) == expected and duplicates <= 2000
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


def _metric(port: int, name: str, labels: str = "") -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.search(rf"^{name}{re.escape('{' + labels + '}') if labels else ''} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def _connections_logged(broker_dir: Path, client_id: str) -> int:
    """How often the broker logged a new connection of `client_id` (its log, read only)."""
    text = (broker_dir / "mosquitto" / "mosquitto.log").read_text(errors="replace")
    return len(re.findall(rf"New client connected from \S+ as {re.escape(client_id)} ", text))


def test_kafka_outage_keeps_the_mqtt_link_alive_loses_nothing_and_memory_stays_bounded(
        settings: Settings, broker: PrivateService, private_kafka: PrivateService, tmp_path: Path,
        record_property) -> None:
    """Kafka (a private instance) stops for longer than 1.5 x keepalive under a stream (<= 2,000 msg/s):
    the bridge's MQTT connection is the same one throughout, held messages stay within the window,
    and every message reaches Kafka once it is back. SMARTCITY_TEST_KAFKA_OUTAGE_S=600 runs the
    10-minute version by hand."""
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap": private_kafka.bootstrap})})
    create_topics(settings)
    tag = uuid.uuid4().hex[:6]
    window, port, client_id = 2000, _free_port(), f"b-{tag}"
    proc = bridge(settings, tmp_path, client_id, f"g{tag}", "--window", str(window), "--metrics-port", str(port))
    time.sleep(3)
    pub = Publisher(settings)
    expected: set = set()
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
                time.sleep(100 / OUTAGE_RATE)
        pub.wait(300)

    publisher = threading.Thread(target=publish_stream)
    publisher.start()
    time.sleep(3)
    connects_before = sum(_metric(port, "bridge_mqtt_connects_total", f'link="own",cause="{c}"')
                          for c in ("start", "drain", "lost"))
    broker_before = _connections_logged(broker.root, client_id)
    private_kafka.run("stop")
    outage = time.monotonic()
    while time.monotonic() - outage < OUTAGE_S:
        inflight_seen.append(_metric(port, "bridge_inflight"))
        rss_seen.append(_rss_mb(proc.pid))
        time.sleep(1)
    connects_during = sum(_metric(port, "bridge_mqtt_connects_total", f'link="own",cause="{c}"')
                          for c in ("start", "drain", "lost")) - connects_before
    broker_saw = _connections_logged(broker.root, client_id) - broker_before
    private_kafka.run("start")
    time.sleep(3)
    stop_flag.set()
    publisher.join()
    pub.close()
    seen = wait_for_count(settings, expected, timeout=600)
    lost_links = _metric(port, "bridge_mqtt_connects_total", 'link="own",cause="lost"')
    assert stop(proc) == 0
    print(f"\nKafka outage {OUTAGE_S:.0f} s: {len(expected)} published, {len(set(seen))} in Kafka, "
          f"connects during the outage {connects_during:.0f} (broker log: {broker_saw}), "
          f"max held {max(inflight_seen):.0f} (window {window}), peak RSS {max(rss_seen):.0f} MB")
    record_property("max_rss_mb_during_outage", max(rss_seen))
    assert expected <= set(seen), f"{len(expected - set(seen))} messages lost"
    assert connects_during == 0 and lost_links == 0 and broker_saw == 0, "the MQTT link did not hold"
    assert max(inflight_seen) <= window
    assert max(rss_seen) < 300


def test_two_bridges_on_one_shared_subscription_split_the_stream_without_overlap(settings: Settings, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    procs = [bridge(settings, tmp_path, f"b{n}-{tag}", f"g{tag}", "--shared") for n in (1, 2)]
    time.sleep(3)
    expected = publish(settings, tag, 8_000)
    wait_for_count(settings, expected)
    by_bridge: dict[str, Counter] = {}
    for d in ("air", "seawater", "fire"):
        for r in read_topic(settings, settings.kafka.telemetry_topic(d), expect=0, idle=2):
            origin = dict(r.headers)["bridge"].decode()
            for v in record_readings(r.value):
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


def publish_killing(settings: Settings, tag: str, victim: subprocess.Popen, n: int = 4000,
                    at: int = 1000) -> set[tuple[str, int]]:
    """Publish messages 0..n-1 at a steady pace, SIGKILLing `victim` after message `at`; returns the
    readings (sensor, ts) that must reach Kafka."""
    pub = Publisher(settings)
    msgs = [message(i, tag) for i in range(n)]
    for i, (topic, payload, _) in enumerate(msgs):
        pub.publish(topic, payload)
        if i == at:
            victim.kill()
            victim.wait()
        if i % 100 == 0:
            time.sleep(0.05)
    pub.wait()
    pub.close()
    return {key for _, _, key in msgs}


def test_a_bridge_killed_for_good_strands_none_of_its_share(settings: Settings, tmp_path: Path) -> None:
    """Two bridges share the stream; one is SIGKILLed mid-stream and never restarted. Mosquitto keeps
    routing its share to its offline session; the live bridge adopts that session after the grace
    period, forwards what it holds and ends it, so every message reaches Kafka in bounded time."""
    tag = uuid.uuid4().hex[:6]
    group = f"g{tag}"
    live = bridge(settings, tmp_path, f"b1-{tag}", group, "--adopt-after", "5", "--shared")
    doomed = bridge(settings, tmp_path, f"b2-{tag}", group, "--adopt-after", "5", "--shared")
    time.sleep(3)
    expected = publish_killing(settings, tag, doomed)   # never restarted
    published = time.monotonic()
    seen = wait_for_count(settings, expected, timeout=90)
    took = time.monotonic() - published
    assert stop(live) == 0
    log = (tmp_path / f"b1-{tag}.log").read_text()
    missing = expected - set(seen)
    print(f"\nshare-group kill: {len(expected)} published, {len(expected) - len(missing)} in Kafka "
          f"{took:.0f} s after the last publish")
    assert not missing, f"{len(missing)} messages stranded in the dead bridge's session"
    assert f"event=adoption_ended peer=b2-{tag} result=drained session_present=True" in log
    # The dead bridge's session is gone: resuming it finds nothing (and expiry 0 leaves nothing behind).
    probe = mqtt_client(settings, f"b2-{tag}")
    present: list[bool] = []
    done = threading.Event()
    probe.on_connect = lambda c, u, flags, reason, p: (present.append(flags.session_present), done.set())
    probe.connect(settings.mqtt.host, settings.mqtt.port, clean_start=False)
    probe.loop_start()
    assert done.wait(10)
    probe.disconnect()
    probe.loop_stop()
    assert present == [False]


def _filters(*filters: str) -> list[str]:
    return [a for f in filters for a in ("--filter", f)]


def test_bridges_dividing_the_topics_lose_nothing_when_one_dies_and_give_them_back_on_its_return(
        settings: Settings, tmp_path: Path) -> None:
    """Two bridges with plain subscriptions divide the formats between them. One is SIGKILLed mid-stream:
    the live one subscribes to its filters, drains its session and ends it (and, SIGKILLed in turn,
    restarts still listing them). When the first returns, the live one unsubscribes them again, and
    what is published after that is forwarded by the returned one."""
    tag = uuid.uuid4().hex[:6]
    group, mine, theirs = f"g{tag}", ("city/+/+/+/up", "city/+/+/+/senml"), ("v3/+/devices/+/up", "application/+/device/+/event/up")
    live = bridge(settings, tmp_path, f"b1-{tag}", group, "--adopt-after", "5", *_filters(*mine))
    doomed = bridge(settings, tmp_path, f"b2-{tag}", group, "--adopt-after", "5", *_filters(*theirs))
    time.sleep(2)
    expected = publish_killing(settings, tag, doomed)
    seen = wait_for_count(settings, expected, timeout=90)
    assert not expected - set(seen), f"{len(expected - set(seen))} messages stranded with the dead bridge's filters"
    log = tmp_path / f"b1-{tag}.log"
    assert f"event=filters_taken_over peer=b2-{tag}" in log.read_text()
    assert f"event=adoption_ended peer=b2-{tag} result=drained" in log.read_text()
    # The adopter crashes while it holds the dead bridge's filters: its Last Will listed them, so the
    # restarted adopter lists them again (and gives them back below), rather than holding them unseen.
    live.kill()
    live.wait()
    live = bridge(settings, tmp_path, f"b1-{tag}", group, "--adopt-after", "5", *_filters(*mine))
    deadline = time.monotonic() + 30
    while "event=filters_restored" not in log.read_text():
        assert time.monotonic() < deadline, "the restarted adopter forgot the filters its session holds"
        time.sleep(0.2)

    back = bridge(settings, tmp_path, f"b2-{tag}", group, "--adopt-after", "5", *_filters(*theirs))
    deadline = time.monotonic() + 30
    while not [ln for ln in log.read_text().splitlines() if "event=filters_given_back" in ln and f"b2-{tag}" in ln]:
        assert time.monotonic() < deadline, "the live bridge kept the returned bridge's filters"
        time.sleep(0.2)
    time.sleep(1)  # UNSUBSCRIBE
    later = {message(i, tag)[2]: message(i, tag)[0] for i in range(4000, 4400)}
    pub = Publisher(settings)
    for i in range(4000, 4400):
        pub.publish(*message(i, tag)[:2])
    pub.wait()
    pub.close()
    wait_for_count(settings, set(later), timeout=60)
    origin: dict[tuple, set[str]] = {}
    for d in ("air", "seawater", "fire"):
        for r in read_topic(settings, settings.kafka.telemetry_topic(d), expect=0, idle=2):
            for v in record_readings(r.value):
                key = (v["sensor_id"], v["ts"])
                if key in later:
                    origin.setdefault(key, set()).add(dict(r.headers)["bridge"].decode())
    for stopped in (live, back):
        assert stop(stopped) == 0
    assert set(origin) == set(later)
    wrong = {k: o for k, o in origin.items()
             if o != ({f"b1-{tag}"} if later[k].startswith("city/") else {f"b2-{tag}"})}
    assert not wrong, f"{len(wrong)} messages forwarded by the wrong bridge or twice, e.g. {list(wrong.items())[:3]}"


def test_a_bridge_restarted_with_fewer_filters_keeps_the_others_until_a_peer_owns_them(
        settings: Settings, tmp_path: Path) -> None:
    """A bridge restarted with a narrower --filter list (or switched to --shared) must not drop the
    streams its session held: the plain ones it no longer owns are kept, listed as taken, and given to
    the first live bridge of the group that owns them; a plain filter now held as $share is replaced."""
    tag = uuid.uuid4().hex[:6]
    group, mine, theirs = f"g{tag}", ("city/+/+/+/up", "city/+/+/+/senml"), ("v3/+/devices/+/up", "application/+/device/+/event/up")
    first = bridge(settings, tmp_path, f"x-{tag}", group, *_filters(*mine, *theirs))
    assert stop(first) == 0
    expected = publish(settings, tag, 400)          # queued in the session, all four formats
    narrow = bridge(settings, tmp_path, f"x-{tag}", group, "--shared", *_filters(*mine))
    seen = wait_for_count(settings, expected, timeout=60)
    log = (tmp_path / f"x-{tag}.log").read_text()
    assert "event=old_filters_unsubscribed" in log and "event=filters_restored" in log, log[-3000:]
    assert expected <= set(seen), f"{len(expected - set(seen))} lost when the filters changed"
    later = publish(settings, f"{tag}b", 400)       # still forwarded: nobody else owns v3/application yet
    assert later <= set(wait_for_count(settings, later, timeout=60))
    owner = bridge(settings, tmp_path, f"y-{tag}", group, *_filters(*theirs))
    deadline = time.monotonic() + 30
    while "event=filters_given_back" not in (tmp_path / f"x-{tag}.log").read_text():
        assert time.monotonic() < deadline, "the restarted bridge kept filters a live owner holds"
        time.sleep(0.2)
    last = publish(settings, f"{tag}c", 400)
    assert last <= set(wait_for_count(settings, last, timeout=60))
    for proc in (narrow, owner):
        assert stop(proc) == 0


def test_two_bridges_with_one_client_id_say_so(settings: Settings, tmp_path: Path) -> None:
    """The broker hands a session from one connection to the other with the same client id, endlessly;
    the bridges cannot stop that, but they must say what is wrong and how to fix it."""
    tag = uuid.uuid4().hex[:6]
    first = bridge(settings, tmp_path, f"same-{tag}", f"g{tag}")
    second = start(settings, "bridge", "--client-id", f"same-{tag}", "--group", f"g{tag}", "--metrics-port", "0",
                   log=tmp_path / "second.log")
    STARTED.append(second)
    deadline = time.monotonic() + 45
    logs = [tmp_path / f"same-{tag}.log", tmp_path / "second.log"]
    while not any("event=client_id_clash" in p.read_text(errors="replace") for p in logs):
        assert time.monotonic() < deadline, "two bridges with one client id went unreported"
        time.sleep(0.5)
    for proc in (first, second):
        stop(proc)


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared"])
def test_a_broker_restart_keeps_plain_subscriptions_and_drops_shared_ones(
        settings: Settings, broker: PrivateService, tmp_path: Path, shared: bool) -> None:
    """Mosquitto restores a persistent session's plain subscriptions when it restarts, not its
    `$share/...` ones (why plain is the default); checked on 2.0.11 and 2.0.21 (bookworm-backports,
    what deploy/native/mosquitto.sh installs). The bridge is frozen across the restart, so devices
    publish before it can resubscribe: with plain subscriptions the broker queues for it."""
    tag = uuid.uuid4().hex[:6]
    proc = bridge(settings, tmp_path, f"b-{tag}", f"g{tag}", *(["--shared"] if shared else []))
    time.sleep(1)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        broker.run("stop")
        broker.run("start")
        expected = publish(settings, tag, 400)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    seen = set(wait_for_count(settings, expected, timeout=30 if shared else 120))
    assert stop(proc) == 0
    if shared:
        assert not expected & seen, (f"Mosquitto {_broker_version()} restored a shared subscription across a "
                                     "restart (2.0.11 and 2.0.21 did not): the README's note on --shared is out of date")
    else:
        assert expected <= seen, f"{len(expected - seen)} of {len(expected)} published after the restart lost"


def _broker_version() -> str:
    """The installed Mosquitto's version (the private broker of these tests runs it)."""
    out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout
    return re.search(r"mosquitto version (\S+)", out).group(1)  # type: ignore[union-attr]


# Receive Maximum once PUBACKs flow, measured per version (limit 10, 5 of 10 acked: 15 sent if honoured)
RECEIVE_MAXIMUM_HONOURED = {"2.0.11": False, "2.0.21": True}


def test_receive_maximum_once_acks_flow_is_what_was_measured_for_this_broker_version(
        settings: Settings, broker: PrivateService) -> None:
    """A subscriber with Receive Maximum 10 holds 10 unacknowledged messages, acks 5: a broker that
    honours the limit sends 5 more (2.0.21), 2.0.11 sent 50 more. The README's facts follow this table."""
    version, tag = _broker_version(), uuid.uuid4().hex[:6]
    assert version in RECEIVE_MAXIMUM_HONOURED, (
        f"Mosquitto {version} was never measured: re-measure the README's broker facts and add it here")
    got: list = []
    sub = mqtt_client(settings, f"rm-{tag}", username="bridge", manual_ack=True)
    sub.on_message = lambda c, u, m: got.append(m)
    mqtt_connect(sub, settings, session_expiry=60, receive_maximum=10)
    sub.loop_start()
    sub.subscribe(f"city/air/{tag}-rm/+/up", qos=1)
    time.sleep(0.5)
    pub = Publisher(settings)
    for i in range(200):
        pub.publish(f"city/air/{tag}-rm/s{i % 5}/up", json.dumps({"ts": BASE_TS + i, "values": {"pm25": 3}}).encode())
    pub.wait()
    pub.close()
    time.sleep(2)
    before = len(got)
    for m in got[:5]:
        sub.ack(m.mid, m.qos)
    time.sleep(2)
    after = len(got)
    sub.disconnect()
    sub.loop_stop()
    print(f"\nMosquitto {version}: Receive Maximum 10, {before} sent unacknowledged, {after} after acking 5")
    assert before == 10
    assert (after == 15) == RECEIVE_MAXIMUM_HONOURED[version], (
        f"Mosquitto {version} sent {after} (15 if it honours Receive Maximum once acks flow); the table says "
        f"honoured={RECEIVE_MAXIMUM_HONOURED[version]}")


class SlowProducer:
    """A real KafkaProducer whose flush() first waits: batches stay in the window for a while."""

    def __init__(self, settings: Settings, delay: float, **overrides) -> None:
        self.inner, self.delay = kafka_producer(settings, max_block_ms=10_000, **overrides), delay

    def flush(self, timeout: float | None = None) -> None:
        time.sleep(self.delay)
        self.inner.flush(timeout)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def run_bridge(settings: Settings, producer=None, **config) -> tuple[Bridge, threading.Thread]:
    """A bridge in this process (its metrics and window readable), running on a thread."""
    runner = Bridge(settings, BridgeConfig(client_id=f"b-{uuid.uuid4().hex[:6]}", group=f"g{uuid.uuid4().hex[:6]}",
                                           session_expiry=120, **config), producer=producer)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while runner.link.session_present is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    return runner, thread


def sample(metric) -> float:
    return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total") or s.name == m.name)


def test_a_full_window_drops_and_reconnects_losing_nothing(settings: Settings) -> None:
    """The bridge bounds itself (2.0.11 sent past our Receive Maximum once acks flow; on 2.0.21 the
    window overflows too, measured: window 50, 475 dropped and redelivered): with a small window and a slow
    Kafka, the bridge holds no more than the window, leaves the excess unacknowledged, reconnects
    when drained, and the broker's redelivery brings every message in."""
    tag = uuid.uuid4().hex[:6]
    runner, thread = run_bridge(settings, SlowProducer(settings, 0.3), window=50)
    held_seen = []
    sampler_stop = threading.Event()

    def watch() -> None:
        while not sampler_stop.is_set():
            held_seen.append(runner.held)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    expected = publish(settings, tag, 3000)
    seen = wait_for_count(settings, expected, timeout=180)
    sampler_stop.set()
    watcher.join()
    runner.stop()
    thread.join(60)
    dropped = sample(runner.metrics.window_dropped)
    drains = sum(s.value for m in runner.metrics.connects.collect() for s in m.samples
                 if s.labels.get("cause") == "drain" and s.name.endswith("_total"))
    print(f"\nwindow 50: max held {max(held_seen)}, dropped {dropped:.0f} (redelivered), drain reconnects {drains:.0f}")
    assert expected <= set(seen), f"{len(expected - set(seen))} messages lost"
    assert max(held_seen) <= 50
    assert dropped > 0 and drains > 0, "the window never overflowed: the test proves nothing"


def test_acks_that_fail_across_a_broker_restart_lose_nothing(settings: Settings, broker: PrivateService) -> None:
    """A private Mosquitto restarts while the bridge holds a window of messages: their acks cannot be
    sent (counted), the broker redelivers them from its saved session, and nothing is lost."""
    tag = uuid.uuid4().hex[:6]
    runner, thread = run_bridge(settings, SlowProducer(settings, 2.0), window=300)
    expected = publish(settings, tag, 2000)
    while runner.held == 0:
        time.sleep(0.05)
    broker.run("stop")   # returns once the broker saved its database
    broker.run("start")
    seen = wait_for_count(settings, expected, timeout=180)
    runner.stop()
    thread.join(60)
    failed = sample(runner.metrics.ack_failed)
    print(f"\nbroker restart mid-window: {len(expected)} published, {len(set(seen) & expected)} in Kafka, "
          f"{failed:.0f} acks failed (redelivered)")
    assert expected <= set(seen), f"{len(expected - set(seen))} messages lost"
    assert failed > 0, "no ack failed: the restart missed the window"


def test_oversized_payloads_are_refused_by_the_broker_and_large_ones_dead_lettered(
        settings: Settings, broker: PrivateService) -> None:
    """This branch's broker bound (256 KiB packets): a client publishing 10 MB is disconnected with
    "Packet too large" and nothing of it reaches the bridge; a 200 KiB invalid payload is
    dead-lettered; the stream around both flows on."""
    tag = uuid.uuid4().hex[:6]
    runner, thread = run_bridge(settings)
    device = mqtt_client(settings, f"big-{tag}", username="air", reconnect=False)
    told: list = []
    gone: list[str] = []
    device.on_connect = lambda c, u, f, reason, props: told.append(props.MaximumPacketSize)
    device.on_disconnect = lambda c, u, f, reason, props: gone.append(reason.getName())
    mqtt_connect(device, settings)
    device.loop_start()
    pub = Publisher(settings)
    expected = set()
    for i in range(200):
        topic, payload, key = message(i, tag)
        pub.publish(topic, payload)
        expected.add(key)
        if i == 50:
            device.publish(f"city/air/{tag}-big/huge/up", b"x" * 10_000_000, qos=1)
        if i == 100:
            pub.publish(f"city/air/{tag}-big/large/up", b"{" * 200_000)
    pub.wait()
    pub.close()
    seen = wait_for_count(settings, expected, timeout=60)
    dead = values(read_topic(settings, settings.kafka.deadletter_topic, expect=1, idle=2))
    device.loop_stop()
    runner.stop()
    thread.join(60)
    broker_log = (broker.root / "mosquitto" / "mosquitto.log").read_text(errors="replace")
    assert told == [256 * 1024] and gone, "the 10 MB publisher was not told the limit or not disconnected"
    assert f"Client big-{tag} disconnected due to oversize packet" in broker_log
    assert expected <= set(seen)
    assert [d["topic"] for d in dead] == [f"city/air/{tag}-big/large/up"]


def test_records_kafka_refuses_for_good_dead_letter_their_message_and_the_stream_flows_on(settings: Settings) -> None:
    """A record larger than the producer may send and a topic that does not exist are not retried
    forever: each message at fault is dead-lettered with the reason and acked, the others forwarded."""
    tag = uuid.uuid4().hex[:6]
    delete_topics(settings, [settings.kafka.telemetry_topic("fire")])
    runner, thread = run_bridge(settings, kafka_producer(settings, max_block_ms=5000, max_request_size=2048))
    pub = Publisher(settings)
    expected, fire = set(), None
    for i in range(80):
        topic, payload, key = message(i, tag)
        if topic.startswith("application/"):  # ChirpStack -> fire domain, whose topic is gone
            if fire is None:
                fire = topic
                pub.publish(topic, payload)
            continue
        pub.publish(topic, payload)
        expected.add(key)
    pub.publish(f"city/air/{tag}-bad/big/up", b"[" + b"1," * 3000 + b"]")  # its dead letter > 2 KiB
    pub.wait()
    pub.close()
    seen = wait_for_count(settings, expected, timeout=120, domains=("air", "seawater"))
    dead = values(read_topic(settings, settings.kafka.deadletter_topic, expect=2, idle=3))
    acked = runner.metrics.acked._value.get()
    runner.stop()
    thread.join(60)
    reasons = {d["topic"]: d["reason"] for d in dead}
    assert expected <= set(seen)
    assert "does not exist" in reasons[fire]
    assert "MessageSizeTooLarge" in reasons[f"city/air/{tag}-bad/big/up"]
    assert acked == 80 - 20 + 2  # every message acked: the forwarded ones and both dead-lettered
