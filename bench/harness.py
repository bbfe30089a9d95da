"""What every pipeline case needs: a private Mosquitto, isolated topics and buckets, measured processes.

The MQTT side runs on a private broker (own port, own state dir, started by deploy/native/mosquitto.sh)
so that other people's publishers and bridges on the shared broker neither add to nor take from the
messages we count. Kafka and InfluxDB are the shared services, isolated by a topic prefix and fresh
buckets per case (as tests/conftest.py does), all removed at the end.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from influxdb_client import BucketRetentionRules
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from infra.clients import influx_client
from infra.settings import REPO_ROOT, Settings, stack_dir
from infra.stack import create_topics, delete_topics

NATIVE = REPO_ROOT / "deploy" / "native"


def free_port() -> int:
    """A TCP port nobody listens on right now (for the private broker)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> list[float]:
    """The 1/5/15-minute load averages: the machine is shared, so every result carries them."""
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class Measured:
    """A process we started, with its CPU seconds and peak RSS read from /proc when we ask."""

    name: str
    proc: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.perf_counter)

    def usage(self) -> dict:
        """CPU seconds (user + system, children included) and peak RSS (VmHWM) so far."""
        import psutil  # the bench extra (pip install -e '.[bench]'); imported here so pure helpers load without it

        try:
            p = psutil.Process(self.proc.pid)
            procs = [p, *p.children(recursive=True)]
            cpu = sum(sum(q.cpu_times()[:2]) for q in procs)
            peak = max(_vm_hwm(q.pid) for q in procs)
        except (psutil.NoSuchProcess, FileNotFoundError):
            return {"cpu_s": None, "peak_rss_mb": None}
        return {"cpu_s": round(cpu, 2), "peak_rss_mb": round(peak / 2**20, 1)}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Signal the process (ours, by pid) and wait; SIGKILL when it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _vm_hwm(pid: int) -> int:
    """Peak resident set size in bytes, as the kernel counted it (/proc/<pid>/status VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Bench:
    """One benchmark run: the private broker, the settings every process gets, and what to clean up."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"smartcity-bench-{self.tag}-"))
        self.workdir.chmod(0o755)  # the broker drops to the mosquitto user, which must reach its folder
        self.stack = self.workdir / "stack"
        self.base_env = dict(os.environ)
        self.mqtt_port = free_port()
        self.topics: list[tuple[Settings, list[str]]] = []
        self.buckets: list = []
        self.procs: list[Measured] = []

    # -- the private broker -------------------------------------------------------------------
    def start_broker(self) -> None:
        """Start a private Mosquitto (same config as the stack's) and point this process at it."""
        shared_secrets = stack_dir() / "secrets"
        token = shared_secrets / "influx-token"
        if not token.is_file():
            raise RuntimeError(f"no InfluxDB token at {token}: start the stack first (make stack)")
        (self.stack / "secrets").mkdir(parents=True, exist_ok=True)
        os.chmod(self.stack / "secrets", 0o700)
        shutil.copy2(token, self.stack / "secrets" / "influx-token")
        env = {**self.base_env, "SMARTCITY_STACK_DIR": str(self.stack), "SMARTCITY_MQTT_PORT": str(self.mqtt_port),
               "SMARTCITY_MQTT_TLS_PORT": str(free_port())}
        proc = subprocess.run([str(NATIVE / "mosquitto.sh"), "start"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"private Mosquitto on port {self.mqtt_port} did not start:\n{proc.stderr[-2000:]}")
        # Every process from here on (ours and the children) talks to the private broker.
        os.environ["SMARTCITY_STACK_DIR"] = str(self.stack)
        os.environ["SMARTCITY_MQTT__PORT"] = str(self.mqtt_port)

    def start_kafka(self) -> None:
        """Start a private Kafka (deploy/native/kafka.sh, own state folder and ports): the shared one is
        restarted by other people's chaos tests and carries hundreds of their partitions."""
        self.kafka_port = free_port()
        env = {**self.base_env, "SMARTCITY_STACK_DIR": str(self.stack), "SMARTCITY_KAFKA_PORT": str(self.kafka_port),
               "SMARTCITY_KAFKA_CONTROLLER_PORT": str(free_port())}
        proc = subprocess.run([str(NATIVE / "kafka.sh"), "start"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"private Kafka on port {self.kafka_port} did not start:\n{proc.stderr[-2000:]}")
        os.environ["SMARTCITY_KAFKA__BOOTSTRAP"] = f"127.0.0.1:{self.kafka_port}"

    def stop_broker(self) -> None:
        env = {**self.base_env, "SMARTCITY_STACK_DIR": str(self.stack), "SMARTCITY_MQTT_PORT": str(self.mqtt_port)}
        subprocess.run([str(NATIVE / "mosquitto.sh"), "stop"], env=env, capture_output=True)
        if getattr(self, "kafka_port", None):
            subprocess.run([str(NATIVE / "kafka.sh"), "stop"], capture_output=True,
                           env={**env, "SMARTCITY_KAFKA_PORT": str(self.kafka_port)})

    # -- isolation ----------------------------------------------------------------------------
    def settings(self, name: str, *, topics: bool = True, buckets: bool = False) -> Settings:
        """Settings with their own topic prefix `<tag><name>.` (topics created) and, optionally, buckets."""
        base = Settings()
        key = f"b{self.tag}{name}"
        update: dict = {"kafka": base.kafka.model_copy(update={"topic_prefix": f"{key}."})}
        if buckets:
            update["influx"] = base.influx.model_copy(update={"bucket_raw": f"{key}-raw",
                                                              "bucket_compliance": f"{key}-compliance"})
        s = base.model_copy(update=update)
        if topics:
            self.topics.append((s, create_topics(s)))
        if buckets:
            self.create_buckets(s, s.influx.bucket_raw, s.influx.bucket_compliance)
        return s

    def create_buckets(self, settings: Settings, *names: str) -> None:
        with influx_client(settings) as client:
            api = client.buckets_api()
            for name in names:
                self.buckets.append(api.create_bucket(bucket_name=name, org=settings.influx.org,
                                                      retention_rules=BucketRetentionRules(type="expire",
                                                                                           every_seconds=0)))

    def cleanup(self, keep_logs: bool = False) -> None:
        """Stop what we started (by pid), delete our topics and buckets, stop the private broker and
        remove its state (a copy of the token included); the process logs stay when `keep_logs`."""
        for p in self.procs:
            p.stop(signal.SIGKILL, 10)
        for s, names in self.topics:
            try:
                delete_topics(s, names)
            except Exception as exc:  # noqa: BLE001 - clean-up goes on with the rest
                print(f"  clean-up: could not delete topics {names[0]}...: {exc}", file=sys.stderr)
        if self.buckets:
            with influx_client(Settings()) as client:
                for b in self.buckets:
                    try:
                        client.buckets_api().delete_bucket(b)
                    except Exception as exc:  # noqa: BLE001
                        print(f"  clean-up: could not delete bucket {b.name}: {exc}", file=sys.stderr)
        self.stop_broker()
        shutil.rmtree(self.stack if keep_logs else self.workdir, ignore_errors=True)
        if keep_logs:
            print(f"  process logs kept in {self.workdir}", file=sys.stderr)

    # -- processes ----------------------------------------------------------------------------
    def env(self, settings: Settings, **extra: str) -> dict[str, str]:
        """The environment that gives a child process `settings` (the private broker is inherited)."""
        return {**os.environ, "SMARTCITY_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
                "SMARTCITY_INFLUX__BUCKET_RAW": settings.influx.bucket_raw,
                "SMARTCITY_INFLUX__BUCKET_COMPLIANCE": settings.influx.bucket_compliance,
                "SMARTCITY_INFLUX__SERVICE": "",   # the operator token: the services' credentials cannot write bench buckets
                **extra}

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Measured:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        m = Measured(name, proc, log)
        self.procs.append(m)
        return m

    def smartcity(self, name: str, settings: Settings, *args: str) -> Measured:
        """Start `smartcity <args>` (the public command) with `settings`."""
        return self.spawn(name, [sys.executable, "-m", "smartcity.cli", *args], self.env(settings))


class KafkaCounter:
    """Counts the records in a set of topics (sum of end offsets) and committed offsets of a group."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap)
        self.admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        self.parts = self._partitions(topics)

    def _partitions(self, topics: list[str], wait: float = 60.0) -> list[TopicPartition]:
        """Every partition of `topics`, waiting for the metadata of topics created a moment ago (a
        consumer's cache does not know them yet: counting without them silently undercounts)."""
        deadline = time.monotonic() + wait
        while True:
            known = {t: self.consumer.partitions_for_topic(t) for t in topics}
            missing = [t for t, p in known.items() if not p]
            if not missing:
                return [TopicPartition(t, p) for t in topics for p in sorted(known[t])]
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka has no metadata for {', '.join(missing)} after {wait:.0f} s; "
                                   "were the topics created?")
            self.consumer.topics()  # forces a metadata refresh
            time.sleep(0.5)

    def records(self) -> int:
        return sum(self.consumer.end_offsets(self.parts).values())

    def committed(self, group: str) -> int:
        """Sum of the group's committed offsets on our topics; 0 while the group or its coordinator
        does not exist yet (a fresh broker creates __consumer_offsets on first use)."""
        from kafka.errors import KafkaError

        try:
            return self._committed(group)
        except KafkaError:
            return getattr(self, "_last_committed", 0)

    def _committed(self, group: str) -> int:
        if hasattr(self.admin, "list_group_offsets"):  # kafka-python 3.x
            offsets = self.admin.list_group_offsets({group: None}).get(group, {})
        else:  # kafka-python 2.x
            offsets = self.admin.list_consumer_group_offsets(group)
        wanted = set(self.parts)
        self._last_committed = sum(o.offset for tp, o in offsets.items() if tp in wanted and o.offset > 0)
        return self._last_committed

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def wait_until_count(count: "callable", target: int, procs: list[Measured], *, timeout: float,
                     stall: float = 20.0, every: float = 0.1) -> tuple[float | None, int, dict]:
    """Sample count() until it reaches target; returns (seconds from the first process start to the
    sample that first showed the final count, final count, usage per process at that moment).

    Gives up when a process dies, nothing moves for `stall` seconds, or `timeout` passes; the time is
    then None and the count says how far it got."""
    t0 = min(p.started for p in procs)
    last, last_change, usage = -1, time.perf_counter(), {}
    reached_at = None
    while True:
        n = count()
        now = time.perf_counter()
        if n != last:
            last, last_change, reached_at = n, now, now
            usage = {p.name: p.usage() for p in procs}
        if n >= target:
            return reached_at - t0, n, usage
        dead = [p for p in procs if not p.alive()]
        if dead or now - last_change > stall or now - t0 > timeout:
            why = (f"{dead[0].name} exited ({dead[0].proc.returncode}): {dead[0].tail()}" if dead
                   else f"stalled at {n} of {target}")
            usage["error"] = why
            usage["partial_s"] = round(reached_at - t0, 2) if reached_at else None
            return None, n, usage
        time.sleep(every)


class Sampler(threading.Thread):
    """Samples a counter in the background: (seconds since start, value) pairs, for rates over time."""

    def __init__(self, count: "callable", every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.count, self.every = count, every
        self.samples: list[tuple[float, int]] = []
        self.halt = threading.Event()
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append((time.perf_counter() - self.t0, self.count()))
            self.halt.wait(self.every)

    def stop(self) -> list[tuple[float, int]]:
        self.halt.set()
        self.join(10)
        return self.samples
