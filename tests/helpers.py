"""Helpers for integration tests: run the pipeline's processes with a test's settings, read Kafka."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kafka import TopicPartition

from infra.clients import kafka_consumer
from infra.settings import Settings
from schemas.batch import record_readings

REPO = Path(__file__).resolve().parents[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that gives a subprocess the same (isolated) settings as the test."""
    return {**os.environ, **settings.child_env()}


def start(settings: Settings, *args: str, log: Path | None = None) -> subprocess.Popen:
    """Start `smartcity <args>` as a real process with the test's settings."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "smartcity.cli", *args], env=settings_env(settings),
                            cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM and wait; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
    return proc.wait(timeout)


def read_topic(settings: Settings, topic: str, *, expect: int, timeout: float = 120,
               idle: float = 5.0) -> list:
    """Every record of `topic` from the beginning, waiting until `expect` arrived (then `idle` more s)."""
    consumer = kafka_consumer(settings, None)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    records: list = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500, max_records=10000)
        got = [r for rs in batch.values() for r in rs]
        if got:
            records.extend(got)
            last_new = time.monotonic()
        elif len(records) >= expect and time.monotonic() - last_new >= idle:
            break
    consumer.close()
    return records


def values(records: list) -> list[dict]:
    return [json.loads(r.value) for r in records]


def readings(records: list) -> list[dict]:
    """The readings in telemetry records (a record holds a message's readings of one sensor)."""
    return [d for r in records for d in record_readings(r.value)]


def flux_rows(settings: Settings, bucket: str, flux_filter: str) -> list[dict]:
    """Rows of `bucket` (all time) matching a Flux filter expression."""
    from infra.clients import influx_client

    with influx_client(settings) as client:
        tables = client.query_api().query(f'from(bucket: "{bucket}") |> range(start: 0) |> filter(fn: (r) => {flux_filter})')
    return [dict(r.values) for t in tables for r in t.records]


RAW_FIELDS = ("fill_level", "pm25", "ph", "capacity", "humidity", "harmless_kg")  # one per domain's readings
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def raw_points(settings: Settings) -> set[tuple[str, str, int]]:
    """(measurement, sensor, time in µs: the client's datetime precision) of every reading stored raw."""
    rows = flux_rows(settings, settings.influx.bucket_raw, " or ".join(f'r._field == "{f}"' for f in RAW_FIELDS))
    return {(r["_measurement"], r["sensor"], (r["_time"] - EPOCH) // dt.timedelta(microseconds=1)) for r in rows}


def wait_for_raw(settings: Settings, expected: set[tuple[str, str, int]], timeout: float = 240) -> set:
    """The readings stored raw, waiting until at least as many as `expected` arrived (or the timeout)."""
    deadline = time.monotonic() + timeout
    points: set = set()
    while time.monotonic() < deadline:
        points = raw_points(settings)
        if len(points) >= len(expected):
            break
        time.sleep(2)
    return points


def diff(expected: set, got: set, limit: int = 20) -> str:
    """What is missing and what is extra, a few of each (for an assertion message)."""
    return (f"{len(got)} stored, {len(expected)} expected; missing {sorted(expected - got)[:limit]}; "
            f"extra {sorted(got - expected)[:limit]}")
