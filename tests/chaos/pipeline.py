"""One lane of the chaos suite: its own topics, buckets, pipeline processes, load, probes and the
reconciliation of InfluxDB against the simulation's ground truth.

A lane's point identities are `measurement,sensor=..,site=..,source=.. ts` (the processor's raw
line protocol): the expected set comes from truth.jsonl (readings sent, neither spiked nor
malformed) plus the suite's probes; the stored set from the lane's raw bucket.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from influxdb_client import BucketRetentionRules
from kafka import TopicPartition

from infra.clients import influx_client, kafka_consumer, mqtt_client, mqtt_connect
from infra.settings import Settings
from infra.stack import create_topics
from schemas.timeparse import parse_ts
from simulators.base import Sensors
from simulators.formats import rfc3339
from simulators.publisher import Publisher, account_for
from tests.chaos import stack
from tests.chaos.proxy import line_identity

WEBHOOK_SECRET_ENV = "SMARTCITY_WEBHOOK_CHAOS"
INVALID_FAULTS = {"spike", "malformed"}


@dataclass
class Load:
    """The steady simulated load of a lane (the same data in every lane, so alerts compare)."""

    start: str
    seconds: float
    sensors: int = 3
    rate: float = 4.0               # readings per second per sensor
    interval: float = 900.0         # simulated seconds between a sensor's readings
    seed: int = 11
    faults: str = "duplicate=0.01,late=0.01,spike=0.003,malformed=0.003,skew=0.002"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    killed: bool = False            # we killed it on purpose (the fault), so its exit is no death


@dataclass
class Outcome:
    """What one lane measured, one row of the table."""

    fault: str
    offered: int = 0
    valid: int = 0
    stored: int = 0
    lost: int = 0
    dup: int = 0
    dl_bridge: tuple[int, int] = (0, 0)     # (dead-lettered, injected) by the bridge
    dl_influx: tuple[int, int] = (0, 0)     # (dead-lettered, refused by InfluxDB) by the processor
    alerts: frozenset = frozenset()         # (rule, entity) of firing notifications delivered
    recovery: float | None = None
    comparable: bool = False                # same load as the `none` lane, so the same alerts are due
    died: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Webhook:
    """A webhook receiver for the lane's alert router: what it receives is what was delivered."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        lane = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    lane.received.append(json.loads(body))
                except ValueError:
                    pass
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def firing(self) -> frozenset:
        return frozenset((a["rule"], a["entity"]) for body in self.received if body.get("kind") == "firing"
                         for a in body.get("alerts", []))

    def close(self) -> None:
        self.server.shutdown()


def identity(domain: str, sensor: str, site: str, source: str, ts: int) -> str:
    return f"{domain},sensor={sensor},site={site},source={source} {ts}"


class Lane:
    """Topics `<tag>.…`, buckets `telemetry-<tag>`/`compliance-<tag>`, processes started with the
    lane's settings; the InfluxDB of its processes is reached through the fault proxy on `proxy_port`.
    MQTT topics have no prefix, so a lane with `mqtt_port` has a Mosquitto of its own (state in
    .stack/chaos/lanes/<tag>, the stack's passwords); without, it uses the private stack's broker."""

    def __init__(self, tag: str, fault: str, base: Settings, logs: Path, proxy_port: int,
                 topics_from: "Lane | None" = None, mqtt_port: int | None = None,
                 kafka_port: int | None = None, kafka_bootstrap: str | None = None) -> None:
        self.tag, self.fault, self.logs, self.proxy_port = tag, fault, logs, proxy_port
        self.mqtt_port, self.kafka_port = mqtt_port, kafka_port
        self.dir = stack.STATE / "lanes" / tag if mqtt_port else stack.STATE
        self.script_env = {"SMARTCITY_STACK_DIR": str(self.dir)}
        if mqtt_port:
            self.script_env.update({"SMARTCITY_MQTT_PORT": str(mqtt_port),
                                    "SMARTCITY_MQTT_TLS_PORT": str(mqtt_port + 1000)})
        if kafka_port:   # a Kafka of the lane's own: its outage runs beside the other lanes
            self.script_env.update({"SMARTCITY_KAFKA_PORT": str(kafka_port),
                                    "SMARTCITY_KAFKA_CONTROLLER_PORT": str(kafka_port + 1000),
                                    "SMARTCITY_TOPICS_FILE": "/dev/null"})
            base = base.model_copy(update={"kafka": base.kafka.model_copy(update={"bootstrap": f"127.0.0.1:{kafka_port}"})})
        if kafka_bootstrap:   # the three-node cluster of the cluster lanes
            base = base.model_copy(update={"kafka": base.kafka.model_copy(update={"bootstrap": kafka_bootstrap})})
        prefix = topics_from.settings.kafka.topic_prefix if topics_from else f"{tag}."
        self.settings = base.model_copy(update={
            "mqtt": base.mqtt.model_copy(update={"port": mqtt_port or base.mqtt.port,
                                                 "tls_port": mqtt_port + 1000 if mqtt_port else base.mqtt.tls_port}),
            "kafka": base.kafka.model_copy(update={"topic_prefix": prefix}),
            "influx": base.influx.model_copy(update={"bucket_raw": f"telemetry-{tag}",
                                                     "bucket_compliance": f"compliance-{tag}"})})
        self.procs: list[Proc] = []
        self.truth_dirs: list[Path] = [topics_from.logs / "sim"] if topics_from else []
        self.probes: set[str] = set(topics_from.probes) if topics_from else set()
        self.inside: set[str] = set(topics_from.inside) if topics_from else set()   # valid readings in poison
        self.injected: list[tuple[str, str]] = []            # (topic, sha256) of poison we published
        self.webhook = Webhook()
        self.secret = base64.b32encode(os.urandom(15)).decode()
        self.proxy: subprocess.Popen | None = None
        self.bridge_ids: list[str] = []
        self.notes: list[str] = []
        self.sims: list[subprocess.Popen] = []
        self.tcp = None   # a TcpFaultProxy on the MQTT hop, when via_tcp_proxy() was called
        logs.mkdir(parents=True, exist_ok=True)

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self, influx: bool = True) -> None:
        """The lane's broker, topics, buckets and tokens (unless not `influx`), the proxy, and the
        router's config."""
        if self.mqtt_port:
            (self.dir / "secrets").mkdir(parents=True, exist_ok=True)
            for name in ("influx-token", *(f"mqtt-{p.name[5:]}" for p in (stack.STATE / "secrets").glob("mqtt-*"))):
                shutil.copy(stack.STATE / "secrets" / name, self.dir / "secrets" / name)
            if not (self.dir / "mosquitto" / "certs").exists():   # the stack's CA: no key generation per lane
                shutil.copytree(stack.STATE / "mosquitto" / "certs", self.dir / "mosquitto" / "certs")
            stack.script("mosquitto", "start", env=self.script_env)
        if self.kafka_port:
            stack.script("kafka", "start", env=self.script_env)
        create_topics(self.settings)
        if influx:
            self._influx_setup()
        self.proxy = subprocess.Popen([sys.executable, "-m", "tests.chaos.proxy", "--listen", str(self.proxy_port),
                                       "--target", str(stack.INFLUX_PORT)], env=stack.deploy_env(),
                                      stdout=subprocess.DEVNULL, stderr=open(self.logs / "proxy.log", "ab"))
        deadline = time.monotonic() + 60
        while True:   # the proxy listens before anything talks to it
            try:
                self.proxy_stats()
                break
            except OSError:
                if time.monotonic() > deadline or self.proxy.poll() is not None:
                    raise RuntimeError(f"the fault proxy on {self.proxy_port} did not start; see {self.logs}/proxy.log")
                time.sleep(0.3)
        (self.logs / "alerts.toml").write_text(
            'group_window = 0\n[[subscriber]]\nname = "chaos"\nchannel = "webhook"\n'
            f'url = "http://127.0.0.1:{self.webhook.port}/alerts"\nsecret_env = "{WEBHOOK_SECRET_ENV}"\n'
            "tries = 20\nbackoff = 0.5\n")

    def _influx_setup(self) -> None:
        """The lane's buckets, and tokens of the stack's services' shape for them."""
        with influx_client(self.settings) as client:
            api = client.buckets_api()
            for name in (self.settings.influx.bucket_raw, self.settings.influx.bucket_compliance):
                if api.find_bucket_by_name(name) is None:
                    api.create_bucket(bucket_name=name, org=self.settings.influx.org,
                                      retention_rules=BucketRetentionRules(type="expire", every_seconds=0))
        raw, comp = self.settings.influx.bucket_raw, self.settings.influx.bucket_compliance
        # the same shape as deploy/native/influxdb.sh gives the stack's services, for this lane's buckets:
        # v1 write-only users for what each writes, a v2 token for what the processor reads
        for service, writes in (("bridge", [comp]), ("router", [comp]), ("processor", [raw, comp])):
            stack.script("influxdb", "v1", f"{service}-{self.tag}", *writes, env=self.script_env)
        stack.script("influxdb", "token", f"processor-{self.tag}", f"read:{raw}", f"read:{comp}", env=self.script_env)

    def via_tcp_proxy(self) -> None:
        """From now on the lane's clients reach its broker through a TCP fault proxy (`self.tcp`)."""
        from tests.chaos.tcpproxy import TcpFaultProxy

        port = self.settings.mqtt.port + 500
        self.tcp = TcpFaultProxy(port, self.settings.mqtt.port)
        self.settings = self.settings.model_copy(update={"mqtt": self.settings.mqtt.model_copy(update={"port": port})})

    def env(self, service: str | None) -> dict[str, str]:
        env = stack.deploy_env(self.script_env)
        env.update({
            "SMARTCITY_MQTT__PORT": str(self.settings.mqtt.port),
            "SMARTCITY_KAFKA__TOPIC_PREFIX": self.settings.kafka.topic_prefix,
            "SMARTCITY_KAFKA__BOOTSTRAP": self.settings.kafka.bootstrap,
            "SMARTCITY_INFLUX__BUCKET_RAW": self.settings.influx.bucket_raw,
            "SMARTCITY_INFLUX__BUCKET_COMPLIANCE": self.settings.influx.bucket_compliance,
            "SMARTCITY_INFLUX__URL": f"http://127.0.0.1:{self.proxy_port}",
            WEBHOOK_SECRET_ENV: self.secret,
        })
        # the lane's own credentials, or the operator token (the stack's service credentials cannot
        # write the lane's buckets; `smartcity bridge` etc. would otherwise pick them)
        env["SMARTCITY_INFLUX__SERVICE"] = f"{service}-{self.tag}" if service else ""
        return env

    def start(self, name: str, *args: str, service: str | None = None) -> Proc:
        """Start `smartcity <args>` as one of the lane's processes (log in the lane's folder)."""
        log = open(self.logs / f"{name}.log", "ab")
        popen = subprocess.Popen([sys.executable, "-m", "smartcity.cli", *args], env=self.env(service),
                                 cwd=stack.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        proc = Proc(name, popen)
        self.procs = [p for p in self.procs if p.name != name] + [proc]
        return proc

    def start_bridge(self, name: str = "bridge", *extra: str) -> Proc:
        client_id = f"{self.tag}-{name}"
        self.bridge_ids.append(client_id)
        return self.start(name, "bridge", "--client-id", client_id, "--group", self.tag, "--metrics-port", "0",
                          *extra, service="bridge")

    def start_processor(self, name: str = "processor", group: str | None = None) -> Proc:
        return self.start(name, "process", "--group", group or f"{self.tag}-p", "--stale-after", "3600",
                          service="processor")

    def start_router(self) -> Proc:
        return self.start("router", "alerts", "serve", "--config", str(self.logs / "alerts.toml"),
                          "--group", f"{self.tag}-r", service="router")

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """The fault: kill one of the lane's processes (its exit is then not counted as a death)."""
        p = self.proc(name)
        p.killed = True
        p.popen.send_signal(sig)
        p.popen.wait(60)

    def died(self) -> list[str]:
        """Processes that exited although nobody killed them."""
        return [f"{p.name} (exit {p.popen.returncode})" for p in self.procs
                if not p.killed and p.popen.poll() is not None]

    # -- load -----------------------------------------------------------------------------------

    def simulate(self, load: Load, seconds: float | None = None, name: str = "sim") -> subprocess.Popen:
        """`smartcity simulate` with the lane's settings, ground truth into <logs>/<name>/."""
        folder = self.logs / name
        self.truth_dirs.append(folder)
        sim = subprocess.Popen(
            [sys.executable, "-m", "smartcity.cli", "simulate", "--domains", "all", "--sensors", str(load.sensors),
             "--rate", str(load.rate), "--duration", f"{seconds or load.seconds}s", "--interval", str(load.interval),
             "--seed", str(load.seed), "--start", load.start, "--faults", load.faults, "--manifest", str(folder)],
            env=self.env(None), cwd=stack.REPO_ROOT, stdout=subprocess.DEVNULL,
            stderr=open(self.logs / f"{name}.log", "ab"))
        self.sims.append(sim)
        return sim

    def probe(self) -> str:
        """Publish one valid reading now; returns its identity (recovery = until it is stored)."""
        sensor, ts = f"{self.tag}-probe{len(self.probes):02d}", time.time_ns() // 1000 * 1000
        pub = Publisher(self.settings, client_prefix=f"{self.tag}-probe")
        try:
            pub.publish(f"city/air/zhonghan/{sensor}/up",
                        json.dumps({"ts": rfc3339(ts), "values": {"pm25": 21.5}}).encode())
            pub.wait(120)
        finally:
            pub.close()
        ident = identity("air", sensor, "zhonghan", "native", ts)
        self.probes.add(ident)
        return ident

    def publish(self, messages: list[tuple[str, bytes]], valid_inside: set[str] | None = None) -> None:
        """Publish hostile messages (counted as injected: each must be dead-lettered); `valid_inside`: the
        identities of valid readings some of them carry beside their junk (these must be stored)."""
        self.inside |= valid_inside or set()
        pub = Publisher(self.settings, client_prefix=f"{self.tag}-poison")
        try:
            for topic, payload in messages:
                pub.publish(topic, payload)
                self.injected.append((topic, hashlib.sha256(payload).hexdigest()))
                time.sleep(0.05)
            pub.wait(300)
        finally:
            pub.close()

    def refused_by_broker(self, topic: str, payload: bytes) -> str | None:
        """Publish `payload` on a device connection of its own; the reason the broker closed that connection
        (None: it stayed open, i.e. the broker took the message)."""
        client = mqtt_client(self.settings, f"{self.tag}-oversize", username=account_for(topic), reconnect=False)
        connected, closed, reason = threading.Event(), threading.Event(), []
        client.on_connect = lambda c, u, f, rc, p: connected.set()
        client.on_disconnect = lambda c, u, f, rc, p: (reason.append(rc.getName()), closed.set())
        mqtt_connect(client, self.settings)
        client.loop_start()
        try:
            if not connected.wait(15):
                raise RuntimeError("the oversize publisher could not connect")
            client.publish(topic, payload, qos=1)
            closed.wait(30)
        finally:
            client.loop_stop()
        return reason[0] if reason else None

    def proxy_mode(self, mode: str, seconds: float = 0, victim: str = "") -> None:
        urllib.request.urlopen(f"http://127.0.0.1:{self.proxy_port}/_chaos/mode?mode={mode}&seconds={seconds}"
                               f"&victim={victim}", timeout=10).read()

    def proxy_stats(self) -> dict:
        """The proxy's answers by status and the identities of the lines it refused."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.proxy_port}/_chaos/stats", timeout=10) as r:
            return json.loads(r.read())

    # -- ground truth and what arrived ------------------------------------------------------------

    def truth(self) -> tuple[int, set[str], int]:
        """(readings offered, valid identities, invalid messages the bridge must dead-letter)."""
        offered, valid, invalid = 0, set(), set()
        for folder in self.truth_dirs:
            path = folder / "truth.jsonl"
            if not path.is_file():
                continue
            for line in path.read_text().splitlines():
                t = json.loads(line)
                if not t.get("sent"):
                    continue
                offered += 1
                if INVALID_FAULTS & set(t["faults"]):
                    invalid.add((t["sensor_id"], t["seq"]))
                else:
                    valid.add(identity(t["domain"], t["sensor_id"], t["site"], "native", int(t["ts"])))
        return (offered + len(self.probes) + len(self.injected), valid | self.probes | self.inside,
                len(invalid) + len(self.injected))

    def stored(self) -> set[str]:
        """Point identities in the lane's raw bucket (read directly, not through the proxy)."""
        flux = (f'from(bucket: "{self.settings.influx.bucket_raw}") |> range(start: 0) '
                '|> keep(columns: ["_measurement", "sensor", "site", "source", "_time"]) |> group()')
        with influx_client(self.settings, timeout_ms=120_000) as client:
            raw = client.query_api().query_raw(flux, dialect=None)
            text = raw.data.decode() if hasattr(raw, "data") else raw.read().decode()
        out = set()
        header: list[str] | None = None
        for row in csv.reader(io.StringIO(text)):
            if not row or not any(row):
                header = None
                continue
            if header is None:
                header = row
                continue
            rec = dict(zip(header, row))
            if rec.get("_time"):
                out.add(identity(rec["_measurement"], rec["sensor"], rec["site"], rec["source"],
                                 parse_ts(rec["_time"])))
        return out

    def dead_letters(self) -> tuple[set[tuple[str, str]], set[str]]:
        """(distinct bridge dead letters as (mqtt topic, raw digest), identities of lines the processor
        dead-lettered as refused by InfluxDB)."""
        bridge, influx = set(), set()
        for rec in read_all(self.settings, self.settings.kafka.deadletter_topic):
            try:
                doc = json.loads(rec.value)
            except ValueError:
                continue
            topic = doc.get("topic", "")
            raw = base64.b64decode(doc.get("raw_b64") or "")
            if topic.startswith("influxdb/"):
                influx.update(line_identity(ln) for ln in raw.decode("utf-8", "replace").splitlines() if ln)
            elif not topic.startswith("alerts/"):
                bridge.add((topic, doc.get("raw_sha256") or doc.get("sha256") or hashlib.sha256(raw).hexdigest()))
        return bridge, influx

    # -- the end of a lane ----------------------------------------------------------------------

    def drain(self, expected: set[str], probe: str | None, fault_end: float, timeout: float,
              idle: float = 30.0) -> tuple[set[str], float | None]:
        """Poll InfluxDB until every expected point is stored (or nothing new for `idle` s, or the
        timeout); returns (stored, seconds from the end of the fault until the probe was stored)."""
        deadline, recovery, last, last_change = time.monotonic() + timeout, None, -1, time.monotonic()
        stored: set[str] = set()
        while True:
            try:
                stored = self.stored()
            except Exception as exc:  # noqa: BLE001 - InfluxDB may be down (this lane's fault or a
                # neighbour's outage): that is no sign the pipeline is done, wait for it until the deadline
                self.note(f"query failed (retried): {type(exc).__name__}")
                if time.monotonic() > deadline:
                    return stored, recovery
                last_change = time.monotonic()
                time.sleep(2)
                continue
            if probe and recovery is None and probe in stored:
                recovery = time.monotonic() - fault_end
            if len(stored) != last:
                last, last_change = len(stored), time.monotonic()
            done = expected <= stored and (probe is None or recovery is not None)
            if done or time.monotonic() > deadline or time.monotonic() - last_change > idle:
                return stored, recovery
            time.sleep(2)

    def settle_alerts(self, quiet: float = 15, timeout: float = 60) -> None:
        """Wait until the webhook has received nothing new for `quiet` s: observations of the last
        records are still on their way through alerts.events and the router when the points are in."""
        deadline = time.monotonic() + timeout
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if len(self.webhook.received) != seen:
                seen, since = len(self.webhook.received), time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(1)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def stop(self) -> None:
        """SIGTERM every process still running (SIGKILL after 30 s), the proxy, the webhook; then drop
        the lane's MQTT sessions so the broker stops queueing for them."""
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.terminate()
        for p in self.procs:
            try:
                p.popen.wait(30)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(10)
                self.note(f"{p.name} needed SIGKILL to stop")
        if self.proxy:
            self.proxy.terminate()
            self.proxy.wait(10)
        self.webhook.close()
        if self.tcp:
            self.tcp.close()
        if self.kafka_port:
            stack.script("kafka", "stop", env=self.script_env, check=False)
        if self.mqtt_port:
            stack.script("mosquitto", "stop", env=self.script_env, check=False)
        else:
            for client_id in self.bridge_ids:
                drop_session(self.settings, client_id)


def wait_ready(lane: Lane, timeout: float = 90) -> None:
    """Until every bridge of the lane is connected to MQTT (then a moment for the consumers to join)."""
    deadline = time.monotonic() + timeout
    for p in lane.procs:
        if not p.name.startswith("bridge"):
            continue
        log = lane.logs / f"{p.name}.log"
        while time.monotonic() < deadline:
            if log.is_file() and "event=mqtt_connected" in log.read_text(errors="replace"):
                break
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited ({p.popen.returncode}) before connecting; see {log}")
            time.sleep(0.5)
    time.sleep(4)


def drop_session(settings: Settings, client_id: str) -> None:
    """Connect with `client_id` and a clean start, then leave: the broker forgets that session."""
    client = mqtt_client(settings, client_id, username="bridge")
    try:
        mqtt_connect(client, settings)
        client.loop_start()
        time.sleep(0.5)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


def read_all(settings: Settings, topic: str, timeout: float = 120) -> list:
    """Every record of `topic` up to its current end offsets."""
    consumer = kafka_consumer(settings, None, max_poll_records=10000)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not parts:
            return []
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in parts) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


def first_sensor(domain: str, n: int) -> str:
    """The id the simulator gives the first sensor of `domain` (the 422 victim)."""
    return str(Sensors.place(domain, n).ids[0])
