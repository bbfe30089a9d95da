"""Fixtures: the real services (started if down, never skipped) and per-test topics and buckets."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from influxdb_client import BucketRetentionRules

from infra.clients import influx_client
from infra.settings import Settings
from infra.stack import create_topics, delete_topics, ensure_stack_up
from tests.helpers import REPO, diff, flux_rows, settings_env, start, stop, wait_for_raw

DAY_START = (int(time.time()) // 86400 - 3) * 86400 - 8 * 3600   # a local (UTC+8) midnight three days ago
SENSORS, TICKS, INTERVAL = 5, 144, 600                              # 5 sensors per domain, every 10 min for a day


@pytest.fixture(scope="session")
def stack() -> str:
    """Make sure Mosquitto, Kafka and InfluxDB run (starting them through deploy/native/up)."""
    return ensure_stack_up()


@contextmanager
def isolated_settings(base: Settings | None = None, *, topics: bool = True) -> Iterator[Settings]:
    """Settings with their own Kafka topics (prefixed; with topics=False, those of `base`) and InfluxDB
    buckets, removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    base = base or Settings()
    isolated = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"t{tag}."}) if topics else base.kafka,
            "influx": base.influx.model_copy(
                update={"bucket_raw": f"telemetry-{tag}", "bucket_compliance": f"compliance-{tag}"}
            ),
        }
    )
    created = create_topics(isolated) if topics else []
    with influx_client(isolated) as client:
        api = client.buckets_api()
        buckets = [
            api.create_bucket(bucket_name=name, org=isolated.influx.org,
                              retention_rules=BucketRetentionRules(type="expire", every_seconds=0))
            for name in (isolated.influx.bucket_raw, isolated.influx.bucket_compliance)
        ]
    try:
        yield isolated
    finally:
        _cleanup(isolated, created, buckets)


def _cleanup(isolated: Settings, created: list[str], buckets: list) -> None:
    if created:
        delete_topics(isolated, created)
    with influx_client(isolated) as client:
        for bucket in buckets:
            client.buckets_api().delete_bucket(bucket)


@pytest.fixture(scope="session")
def pipeline_day(stack: str, tmp_path_factory: pytest.TempPathFactory):
    """One simulated day through the bridge, two processor groups (A undisturbed, B SIGKILLed
    mid-stream and restarted) and the alert router; after the day the sensors fall silent, so the
    processors' stale timers raise real `offline` alerts. Yields (settings A, settings B, truth)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    with isolated_settings() as a, isolated_settings(a, topics=False) as b:
        procs: list[subprocess.Popen] = []   # whatever happens, none outlives the fixture
        try:
            bridge = start(a, "bridge", "--client-id", f"bridge-{a.kafka.topic_prefix}", "--group",
                           a.kafka.topic_prefix.strip("."), "--session-expiry", "120", "--metrics-port", "0",
                           log=tmp / "bridge.log")
            proc_a = start(a, "process", "--group", "proc-a", "--stale-after", "10", log=tmp / "proc-a.log")
            proc_b = start(b, "process", "--group", "proc-b", "--stale-after", "10", log=tmp / "proc-b.log")
            (tmp / "alerts.toml").write_text('group_window = 0\n[[subscriber]]\nname = "wall"\nchannel = "mqtt"\n')
            router = start(a, "alerts", "serve", "--config", str(tmp / "alerts.toml"), "--group", "router-day",
                           log=tmp / "router.log")
            procs += [bridge, proc_a, proc_b, router]
            time.sleep(4)
            sim = subprocess.Popen(
                [sys.executable, "-m", "smartcity.cli", "simulate", "--domains", "all", "--sensors", str(SENSORS),
                 "--count", str(TICKS), "--interval", str(INTERVAL), "--rate", "12", "--seed", "11",
                 "--start", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(DAY_START)), "--manifest", str(tmp / "sim")],
                cwd=REPO, env=settings_env(a), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(sim)
            time.sleep(5)
            proc_b.kill()  # SIGKILL mid-stream
            proc_b.wait()
            time.sleep(2)
            proc_b = start(b, "process", "--group", "proc-b", "--stale-after", "10", log=tmp / "proc-b.log")
            procs.append(proc_b)
            assert sim.wait(120) == 0, sim.stderr.read().decode()
            truth = [json.loads(line) for line in (tmp / "sim" / "truth.jsonl").read_text().splitlines()]
            expected = {(t["domain"], t["sensor_id"], t["ts"] // 1000) for t in truth}
            for s in (a, b):   # exactly the simulated readings, by point identity (to the client's µs)
                got = wait_for_raw(s, expected)
                assert got == expected, diff(expected, got)
            deadline = time.monotonic() + 90  # silent sensors: offline alerts reach the router's history
            while not flux_rows(a, a.influx.bucket_compliance, 'r._measurement == "alerts" and r._field == "state" '
                                'and r._value == "firing" and r.rule =~ /\\.offline$/'):
                assert time.monotonic() < deadline, "no offline alert fired into InfluxDB"
                time.sleep(2)
            for p in (proc_a, proc_b, bridge, router):
                assert stop(p) == 0
            yield a, b, truth
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()


@pytest.fixture
def settings(stack: str) -> Iterator[Settings]:
    """Settings isolated for one test: its own Kafka topics (prefixed) and InfluxDB buckets."""
    with isolated_settings() as isolated:
        yield isolated
