"""Any number of processors in one consumer group give one answer: 1, 2 and 3 members over the same
simulated day (every domain, several sensors per site, ~7% repeated records, late and very late
readings) write the same compliance bucket point for point, also with a member SIGKILLed mid-run and
members joining mid-run. Records are made by the bridge's own encoder (`ReadingBatch.records`: keyed
by site, one record per sensor and message) and produced straight to Kafka, so the run is short."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from kafka import TopicPartition

from infra.clients import kafka_consumer, kafka_producer
from infra.settings import Settings
from processors.service import district_topic
from schemas.batch import ReadingBatch
from schemas.registry import domains
from simulators.base import Sensors
from simulators.registry import models
from tests.conftest import DAY_START, isolated_settings
from tests.helpers import REPO, settings_env, start, stop
from tests.integration.test_processors import compliance_snapshot

pytestmark = pytest.mark.integration

SENSORS, TICKS, INTERVAL, PER_MESSAGE = 14, 144, 600, 6   # 14 sensors per domain (2-3 per site), 10-minute readings


def day_of_readings() -> dict[str, ReadingBatch]:
    """A simulated local day per domain, rows ordered by (sensor, time)."""
    rng = np.random.default_rng(20)
    start_ns = DAY_START * 10**9
    out = {}
    for name, model_class in models().items():
        sensors = Sensors.place(name, SENSORS)
        model = model_class(sensors, np.random.default_rng(rng.integers(1 << 30)))
        rows = []
        for k in range(TICKS):
            t = start_ns + k * INTERVAL * 10**9
            values = model.step(t, INTERVAL)
            for i in np.flatnonzero(~np.isnan(values).all(axis=1)):
                rows.append((i, t, values[i]))
        rows.sort(key=lambda r: (r[0], r[1]))
        n = len(rows)
        out[name] = ReadingBatch(
            name, sensors.ids[[r[0] for r in rows]], sensors.site[[r[0] for r in rows]],
            np.array([r[1] for r in rows], np.int64), np.array([r[2] for r in rows]), np.full(n, -1, np.int64),
            np.full(n, np.nan), np.full(n, np.nan), np.full(n, "native", dtype=object),
            np.array([r[1] for r in rows], np.int64))
    return out


def records_of(settings: Settings) -> list[list[tuple[str, bytes, bytes, int]]]:
    """(topic, key, value, timestamp ms) in production order, as chunks: the day in 4-hour steps with
    ~7% of its records repeated in a later chunk, ~3% held back to the end (late, into hours already
    computed), and readings of a day past the state's horizon (recomputed from the raw bucket)."""
    rng = np.random.default_rng(7)
    chunks: list[list] = [[] for _ in range(TICKS // (4 * PER_MESSAGE) + 2)]
    for name, batch in day_of_readings().items():
        topic = settings.kafka.telemetry_topic(name)
        tick = (batch.ts - DAY_START * 10**9) // (INTERVAL * 10**9)
        sensor = np.unique(batch.sensor_id.astype(str), return_inverse=True)[1].reshape(-1)
        message_of = sensor * 1000 + tick // PER_MESSAGE
        for key, value, ts_ms, row in batch.records(message_of):
            chunk = int(tick[row]) // (4 * PER_MESSAGE)
            record = (topic, key, value, ts_ms)
            draw = rng.random()
            if draw < 0.03:
                chunks[-2].append(record)                                  # late: after the whole day
            else:
                chunks[chunk].append(record)
                if draw < 0.10:                                            # a redelivery, later
                    chunks[min(chunk + 1 + int(rng.integers(0, 3)), len(chunks) - 2)].append(record)
        old = batch.take(np.flatnonzero(tick < 3))                        # the same readings 6 days earlier
        old.ts = old.ts - 6 * 86400 * 10**9
        old.received_at = old.ts.copy()
        chunks[-1] += [(topic, k, v, ts) for k, v, ts, _ in old.records(np.zeros(len(old), np.int64))]
    return chunks


def produce(settings: Settings, chunk: list[tuple[str, bytes, bytes, int]]) -> None:
    producer = kafka_producer(settings)
    futures = [producer.send(topic, key=key, value=value, timestamp_ms=ts) for topic, key, value, ts in chunk]
    producer.flush(60)
    for f in futures:
        f.get(timeout=1)
    producer.close()


def caught_up(settings: Settings, group: str, names: list[str] | None = None) -> bool:
    """The group committed the end of every telemetry and district topic (of `names`, default all)."""
    consumer = kafka_consumer(settings, group)
    try:
        topics = [f(settings, d) for d in names or list(domains())
                  for f in (lambda s, n: s.kafka.telemetry_topic(n), district_topic)]
        parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        ends = consumer.end_offsets(parts)
        return all((consumer.committed(tp) or 0) == ends[tp] for tp in parts)
    finally:
        consumer.close()


@contextlib.contextmanager
def processes() -> Iterator[list]:
    started: list = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_one_two_and_three_processors_write_the_same_compliance_bucket(stack: str, tmp_path_factory) -> None:  # noqa: ANN001
    tmp_path = tmp_path_factory.mktemp("group")
    with isolated_settings() as one, isolated_settings(one, topics=False) as two, \
            isolated_settings(one, topics=False) as three, processes() as procs:
        prefix = one.kafka.topic_prefix.strip(".")
        groups = {f"{prefix}-g1": one, f"{prefix}-g2": two, f"{prefix}-g3": three}
        g1, g2, g3 = groups

        def member(settings: Settings, group: str, n: int):  # noqa: ANN202
            p = start(settings, "process", "--group", group, "--stale-after", "3600", "--session-timeout", "6",
                      log=tmp_path / f"{group}-{n}.log")
            procs.append(p)
            return p

        chunks = records_of(one)
        member(one, g1, 1)
        member(two, g2, 1)
        doomed = member(three, g3, 1)
        member(three, g3, 2)
        member(three, g3, 3)
        time.sleep(6)
        for chunk in chunks[:2]:
            produce(one, chunk)
            time.sleep(1)
        produce(one, chunks[2])
        time.sleep(0.5)        # mid-run: the members are computing and committing the day's first hours
        doomed.kill()          # SIGKILL, inside whatever it was doing (a checkpoint, a poll)
        doomed.wait()
        member(two, g2, 2)     # joins mid-run: the group rebalances while it works
        member(three, g3, 4)   # a replacement joins the group that lost one
        for chunk in chunks[3:]:
            produce(one, chunk)
            time.sleep(1)
        deadline = time.monotonic() + 300
        settled = 0
        while settled < 3:     # caught up three times in a row: district notices come after the windows
            assert time.monotonic() < deadline, {g: caught_up(s, g) for g, s in groups.items()}
            settled = settled + 1 if all(caught_up(s, g) for g, s in groups.items()) else 0
            time.sleep(2)
        for p in procs:
            if p.poll() is None:
                assert stop(p) == 0
        snapshots = {g: compliance_snapshot(s) for g, s in groups.items()}
        reference = set(snapshots[g1])
        counts = {m: sum(1 for p in reference if p[0] == m) for m in sorted({p[0] for p in reference})}
        assert len(reference) > 2500 and {"air_hourly", "air_daily", "fire_daily", "parking_hourly", "seawater_daily",
                                          "surfacewater_daily", "garbage_site", "garbage_daily", "indicator"} <= set(counts), counts
        differ = {pair: set(snapshots[pair[0]]) ^ set(snapshots[pair[1]]) for pair in ((g1, g2), (g1, g3), (g2, g3))}
        assert not any(differ.values()), {f"{a} vs {b}": (len(d), sorted(d)[:4]) for (a, b), d in differ.items()}
        print(f"points compared: {len(reference)} per group x 3 groups {counts}; differing: 0")


def test_a_stack_with_sensor_keyed_records_is_migrated_and_then_split_with_the_same_answer(stack: str,
                                                                                           tmp_path_factory) -> None:  # noqa: ANN001
    """Records of an older bridge (keyed by sensor) fill the open day; `processors.rekey` counts those
    off their site's partition, copies them onto it (--apply), and then one processor and a group of
    two write the same air results, every reading counted once."""
    tmp_path = tmp_path_factory.mktemp("rekey")
    with isolated_settings() as one, isolated_settings(one, topics=False) as two, processes() as procs:
        batch = day_of_readings()["air"]
        topic = one.kafka.telemetry_topic("air")
        tick = (batch.ts - DAY_START * 10**9) // (INTERVAL * 10**9)
        sensor = np.unique(batch.sensor_id.astype(str), return_inverse=True)[1].reshape(-1)
        legacy = [(topic, json_sensor(v), v, ts) for _, v, ts, _ in batch.records(sensor * 1000 + tick // PER_MESSAGE)]
        produce(one, legacy)
        env = settings_env(one)
        dry = subprocess.run([sys.executable, "-m", "processors.rekey", "--domains", "air"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
        assert dry.returncode == 0, dry.stderr
        counted = json.loads(dry.stdout.splitlines()[-1])
        assert counted["read"] == len(legacy) and 0 < counted["off_site_partition"] < len(legacy), counted
        done = subprocess.run([sys.executable, "-m", "processors.rekey", "--domains", "air", "--apply"], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1])["copied"] == counted["off_site_partition"]
        prefix = one.kafka.topic_prefix.strip(".")
        groups = {f"{prefix}-m1": one, f"{prefix}-m2": two}
        for n, (group, settings) in enumerate([*groups.items(), list(groups.items())[1]]):
            procs.append(start(settings, "process", "--domains", "air", "--group", group, "--stale-after", "3600",
                               log=tmp_path / f"{group}-{n}.log"))
        deadline = time.monotonic() + 180
        while not all(caught_up(s, g, ["air"]) for g, s in groups.items()):
            assert time.monotonic() < deadline, "the processors did not catch up"
            time.sleep(2)
        time.sleep(6)   # the district notices of the last checkpoints
        while not all(caught_up(s, g, ["air"]) for g, s in groups.items()):
            assert time.monotonic() < deadline, "the processors did not catch up"
            time.sleep(2)
        for p in procs:
            assert stop(p) == 0
        a, b = compliance_snapshot(one), compliance_snapshot(two)
        assert a and set(a) == set(b)
        counts = [v for m, tags, f, t, v in a if m == "air_hourly" and f == "n"]
        assert sum(counts) >= len(batch) // 2   # n: readings of the hour's best-covered pollutant, summed per site


def json_sensor(value: bytes) -> bytes:
    """The key an older bridge gave a record: its sensor id."""
    return json.loads(value)["sensor_id"].encode()
