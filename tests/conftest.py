"""Fixtures: the real services (started if down, never skipped) and per-test topics and buckets."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

from contextlib import contextmanager

import pytest
from influxdb_client import BucketRetentionRules

from smartcity.clients import influx_client
from smartcity.settings import Settings
from smartcity.stack import create_topics, delete_topics, ensure_stack_up


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


@pytest.fixture
def settings(stack: str) -> Iterator[Settings]:
    """Settings isolated for one test: its own Kafka topics (prefixed) and InfluxDB buckets."""
    with isolated_settings() as isolated:
        yield isolated
