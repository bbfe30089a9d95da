"""The processor under faults, against the real Kafka and InfluxDB: refused lines isolated, InfluxDB and
Kafka outages waited out without leaving the group, nothing skipped on assignment, a dead member's
partitions taken over within seconds."""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from influxdb_client.client.write_api import SYNCHRONOUS
from kafka import TopicPartition

from infra.clients import influx_client, kafka_consumer, kafka_producer
from infra.influxwrite import InfluxWriter
from infra.settings import Settings
from processors.influx import InfluxGateway
from processors.metrics import ProcessorMetrics
from processors.service import ProcessorService
from tests.conftest import isolated_settings
from tests.faultproxy import FaultProxy, free_port
from tests.helpers import read_topic, start, values

pytestmark = pytest.mark.integration

SITES = ("zhonghan", "jinjialing", "shazikou")
NOW_NS = time.time_ns() // 10**9 * 10**9


def air(sensor: str, ts: int, pm25: float) -> bytes:
    """A canonical air reading as the bridge writes it to Kafka."""
    return json.dumps({"sensor_id": sensor, "domain": "air", "site": SITES[hash(sensor) % 3], "ts": ts, "seq": None,
                       "lat": None, "lon": None, "source": "native", "received_at": ts,
                       "values": {"pm25": pm25, "pm10": 2 * pm25, "so2": 5.0, "no2": 20.0, "co": 0.5, "o3": 60.0,
                                  "temperature": 12.0, "humidity": 55.0}}).encode()


def produce(settings: Settings, readings: list[tuple[str, int, float]], extra: list[bytes] = ()) -> None:
    """Readings (sensor, ts ns, pm25) to telemetry.air keyed by sensor with event-time timestamps; every
    future checked."""
    producer = kafka_producer(settings)
    topic = settings.kafka.telemetry_topic("air")
    futures = [producer.send(topic, key=s.encode(), value=air(s, ts, v), timestamp_ms=ts // 10**6)
               for s, ts, v in readings]
    futures += [producer.send(topic, key=b"garbage", value=raw) for raw in extra]
    producer.flush(30)
    for f in futures:
        f.get(timeout=1)
    producer.close()


def stream(sensors: int, ticks: int, start: int = NOW_NS - 3600 * 10**9, step: int = 10**9) -> list:
    return [(f"pm-{s:03d}", start + t * step, 10.0 + s + t % 7) for t in range(ticks) for s in range(sensors)]


def stored(settings: Settings) -> set[tuple[str, int]]:
    """(sensor, ts ns) of the air readings of the last two days in the raw bucket."""
    with influx_client(settings) as client:
        tables = client.query_api().query(f'from(bucket: "{settings.influx.bucket_raw}") |> range(start: -2d) '
                                          '|> filter(fn: (r) => r._measurement == "air" and r._field == "pm25")')
    rows = [r.values for t in tables for r in t.records]
    return {(r["sensor"], int(r["_time"].timestamp()) * 10**9 + r["_time"].microsecond * 1000) for r in rows}


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


@contextmanager
def running(settings: Settings, group: str, **options) -> Iterator[ProcessorService]:  # noqa: ANN003
    """A processor for air in a thread; asserts it is still running when the test is done with it."""
    service = ProcessorService(settings, ["air"], group=group, stale_after=3600, **options)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield service
        assert thread.is_alive() and not failure, f"the processor stopped: {failure}"
    finally:
        service.stop()
        thread.join(60)


def committed_everything(settings: Settings, group: str) -> bool:
    consumer = kafka_consumer(settings, group)
    topic = settings.kafka.telemetry_topic("air")
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    ends = consumer.end_offsets(parts)
    done = all((consumer.committed(tp) or 0) == ends[tp] for tp in parts)
    consumer.close()
    return done


# -- InfluxDB refuses some lines --------------------------------------------------------------------

def test_only_the_lines_influxdb_refuses_are_returned_and_the_rest_are_written(settings: Settings) -> None:
    old = NOW_NS - 30 * 86400 * 10**9
    with influx_client(settings) as client:
        gateway = InfluxGateway(client, InfluxWriter(settings.influx), ProcessorMetrics(), lambda s, d: time.sleep(s))
        assert gateway.write(settings.influx.bucket_raw, [f"probe,k=a v=1i {old}"]) == []
        good = [f"probe,k=g{i} v={i}.5 {NOW_NS + i}" for i in range(40)]
        conflict = f"probe,k=c v=2.5 {old + 1}"       # float into an integer field: 422
        syntax = "probe,k=s v= 1"                      # not line protocol: 400
        refused = gateway.write(settings.influx.bucket_raw, good[:13] + [conflict] + good[13:30] + [syntax] + good[30:])
    assert sorted(r.line for r in refused) == sorted([conflict, syntax])
    reasons = {r.line: r.reason for r in refused}
    assert "422" in reasons[conflict] and "conflict" in reasons[conflict]
    assert "400" in reasons[syntax]
    with influx_client(settings) as client:  # the recent shard only: Flux cannot mix the two field types
        tables = client.query_api().query(f'from(bucket: "{settings.influx.bucket_raw}") |> range(start: -1d) '
                                          '|> filter(fn: (r) => r._measurement == "probe")')
    assert {r.values["k"] for t in tables for r in t.records} == {f"g{i}" for i in range(40)}


def test_a_refused_reading_and_an_undecodable_record_are_dead_lettered_and_the_rest_land(settings: Settings) -> None:
    old = NOW_NS - 30 * 86400 * 10**9
    with influx_client(settings) as client:  # pm25 is an integer in the old shard: a float there is refused (422)
        client.write_api(write_options=SYNCHRONOUS).write(
            settings.influx.bucket_raw, record=f"air,sensor=x,site=zhonghan,source=native pm25=1i {old}")
    good = stream(sensors=10, ticks=10)
    produce(settings, good + [("pm-bad", old + 10**9, 12.5)], extra=[b"not json", b'{"sensor_id": "q"}'])
    with running(settings, "proc-refused"):
        wait_until(lambda: committed_everything(settings, "proc-refused"), 90, "the commit")
    assert stored(settings) == {(s, ts) for s, ts, _ in good}
    letters = values(read_topic(settings, settings.kafka.deadletter_topic, expect=3, timeout=30, idle=2))
    by_topic = sorted(d["topic"] for d in letters)
    topic = settings.kafka.telemetry_topic("air")
    assert by_topic == sorted([f"influxdb/{settings.influx.bucket_raw}", f"kafka/{topic}", f"kafka/{topic}"])
    refused = next(d for d in letters if d["topic"].startswith("influxdb/"))
    assert "field type conflict" in refused["reason"]
    assert base64.b64decode(refused["raw_b64"]).decode().startswith("air,sensor=pm-bad,")


# -- InfluxDB away: errors, throttling, nothing listening --------------------------------------------

def test_influxdb_answering_500_then_429_then_unreachable_is_waited_out_without_leaving_the_group(
        settings: Settings) -> None:
    proxy = FaultProxy(settings.influx.url)
    proxy.up()
    via_proxy = settings.model_copy(update={"influx": settings.influx.model_copy(update={"url": proxy.url})})
    first, second = stream(sensors=6, ticks=20), stream(sensors=6, ticks=20, start=NOW_NS - 1800 * 10**9)
    # a short max.poll.interval.ms: only a processor that keeps polling while it waits stays in the group
    with running(via_proxy, "proc-influx-away", max_poll_interval_ms=6000, session_timeout_ms=6000) as service:
        failures = service.metrics.errors
        proxy.fail_with = 500
        produce(settings, first)
        wait_until(lambda: failures.labels("influx_server")._value.get() >= 3, 60, "retries of 500s")
        proxy.fail_with = 429
        wait_until(lambda: failures.labels("influx_throttled")._value.get() >= 2, 60, "retries of 429s")
        proxy.down()
        proxy.fail_with = None
        produce(settings, second)
        wait_until(lambda: failures.labels("influx_unreachable")._value.get() >= 2, 60, "retries of refused connections")
        time.sleep(7)  # longer than max.poll.interval.ms and the session timeout
        proxy.up()
        wait_until(lambda: stored(settings) == {(s, ts) for s, ts, _ in first + second}, 90, "every reading")
        wait_until(lambda: committed_everything(settings, "proc-influx-away"), 30, "the commit")
        assert service.metrics.rebalances._value.get() == 1  # joined once, never dropped out of the group
        assert service.metrics.deadlettered.labels("influx_refused")._value.get() == 0
    assert proxy.answers[500] and proxy.answers[429]
    proxy.down()


# -- assignment: nothing skipped --------------------------------------------------------------------

def test_a_new_group_whose_assigning_poll_returns_records_on_an_empty_bucket_skips_nothing(settings: Settings) -> None:
    readings = stream(sensors=12, ticks=40)
    produce(settings, readings)
    port = free_port()
    # a long poll timeout: the poll that joins the group also fetches records (the case that used to skip)
    with running(settings, "proc-new-group", poll_timeout_ms=20_000, metrics_port=port):
        wait_until(lambda: committed_everything(settings, "proc-new-group"), 90, "the commit")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert stored(settings) == {(s, ts) for s, ts, _ in readings}
    assert 'processor_records_total{domain="air"} 480.0' in metrics
    topic = settings.kafka.telemetry_topic("air")
    assert all(f'processor_consumer_lag{{partition="{p}",topic="{topic}"}} 0.0' in metrics for p in range(6))
    assert 'processor_write_latency_seconds_count{bucket="' in metrics
    assert 'processor_errors_total{class="influx_rejected"} 0.0' in metrics


# -- a member dies: takeover --------------------------------------------------------------------------

ASSIGNED = re.compile(r"ts=(\S+ \S+) .*event=partitions_assigned .*owned=(\d+) new=(\d+) kept=(\d+) lost=(\d+)")


def assignments(log: Path) -> list[tuple[float, int, int, int, int]]:
    """(time, owned, new, kept, lost) of each partitions_assigned event in a processor log."""
    out = []
    for m in ASSIGNED.finditer(log.read_text() if log.exists() else ""):
        t = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        out.append((t, *map(int, m.groups()[1:])))
    return out


def test_a_sigkilled_member_s_partitions_are_taken_over_within_seconds_and_nothing_is_lost(
        settings: Settings, tmp_path: Path) -> None:
    first = stream(sensors=24, ticks=10)
    produce(settings, first)
    args = ("process", "--domains", "air", "--group", "proc-takeover", "--stale-after", "3600")
    every = 7   # telemetry.air's 6 partitions and districts.air's one
    survivor = start(settings, *args, log=tmp_path / "survivor.log")
    wait_until(lambda: any(a[1] == every for a in assignments(tmp_path / "survivor.log")), 60, "the first member")
    victim = start(settings, *args, log=tmp_path / "victim.log")
    wait_until(lambda: any(a[1] in (3, 4) for a in assignments(tmp_path / "victim.log")), 60, "the second member")
    moved = assignments(tmp_path / "victim.log")[-1][1]
    wait_until(lambda: assignments(tmp_path / "survivor.log")[-1][1] == every - moved, 30, "the split")
    # the member that kept its partitions did not rewind them: only the new owner replays
    assert assignments(tmp_path / "survivor.log")[-1][2:] == (0, every - moved, moved)
    killed = time.time()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    wait_until(lambda: assignments(tmp_path / "survivor.log")[-1][1] == every, 60, "the takeover", interval=0.2)
    took, _, new, kept, lost = assignments(tmp_path / "survivor.log")[-1]
    print(f"takeover after SIGKILL: {took - killed:.1f} s (session timeout 10 s)")
    assert (new, kept, lost) == (moved, every - moved, 0)
    assert took - killed < 30  # the session timeout (10 s) plus a rebalance, not the 45 s default
    second = stream(sensors=24, ticks=5, start=NOW_NS - 600 * 10**9)
    produce(settings, second)
    wait_until(lambda: stored(settings) == {(s, ts) for s, ts, _ in first + second}, 90, "every reading")
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(60) == 0


# -- Kafka away (a PRIVATE broker: the shared one is never stopped) ------------------------------------

KAFKA_SH = Path(__file__).resolve().parents[2] / "deploy" / "native" / "kafka.sh"


@pytest.fixture(scope="module")
def private_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], None]]:
    """A Kafka of our own (own ports, own stack dir), started by the deploy script; yields
    `control("broker" | "stop")` with its bootstrap address as `.bootstrap` (tests make their topics)."""
    env = dict(os.environ, SMARTCITY_STACK_DIR=str(tmp_path_factory.mktemp("private-stack")),
               SMARTCITY_KAFKA_PORT=str(free_port()), SMARTCITY_KAFKA_CONTROLLER_PORT=str(free_port()),
               SMARTCITY_KAFKA_HEAP="384m")

    def control(action: str) -> None:
        proc = subprocess.run([str(KAFKA_SH), action], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]

    control.bootstrap = f"127.0.0.1:{env['SMARTCITY_KAFKA_PORT']}"  # type: ignore[attr-defined]
    control("broker")
    try:
        yield control
    finally:
        control("stop")


def test_a_kafka_outage_in_the_middle_of_a_checkpoint_is_waited_out_and_nothing_is_lost(
        private_kafka: Callable[[str], None], stack: str) -> None:
    base = Settings()
    base = base.model_copy(update={"kafka": base.kafka.model_copy(update={"bootstrap": private_kafka.bootstrap})})  # type: ignore[attr-defined]
    with isolated_settings(base) as settings:
        proxy = FaultProxy(settings.influx.url)
        proxy.up()
        via_proxy = settings.model_copy(update={"influx": settings.influx.model_copy(update={"url": proxy.url})})
        first, second = stream(sensors=8, ticks=10), stream(sensors=8, ticks=10, start=NOW_NS - 1200 * 10**9)
        with running(via_proxy, "proc-kafka-away", session_timeout_ms=6000) as service:
            proxy.fail_only, proxy.fail_with = "/api/v2/write", 500   # the first poll's writes wait ...
            produce(settings, first, extra=[b"not a reading"])
            wait_until(lambda: service.metrics.errors.labels("influx_server")._value.get() >= 1, 60, "a stuck write")
            private_kafka("stop")          # ... Kafka goes away under the checkpoint ...
            stopped = time.monotonic()
            try:
                proxy.fail_with = None     # ... and InfluxDB comes back: observations and the dead letter must wait
                wait_until(lambda: service.metrics.waiting.labels("kafka")._value.get() == 1, 60, "waiting for Kafka",
                           interval=0.1)
                time.sleep(15)             # longer than the session timeout
            finally:
                private_kafka("broker")
            print(f"Kafka away for {time.monotonic() - stopped:.0f} s (stop to broker answering)")
            produce(settings, second)
            wait_until(lambda: stored(settings) == {(s, ts) for s, ts, _ in first + second}, 120, "every reading")
            wait_until(lambda: committed_everything(settings, "proc-kafka-away"), 60, "the commit")
            print("produce retries while Kafka was away:", service.metrics.errors.labels("kafka_produce")._value.get())
        letters = values(read_topic(settings, settings.kafka.deadletter_topic, expect=1, timeout=30, idle=2))
        assert [d["topic"] for d in letters] == [f"kafka/{settings.kafka.telemetry_topic('air')}"]
        assert read_topic(settings, settings.kafka.alerts_topic, expect=1, timeout=30, idle=2)
        proxy.down()
