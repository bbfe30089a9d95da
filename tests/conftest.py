"""Fixtures: the real services (started if down, never skipped) and per-test topics and buckets."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from influxdb_client import BucketRetentionRules

from smartcity.clients import influx_client
from smartcity.settings import Settings
from smartcity.stack import create_topics, delete_topics, ensure_stack_up


@pytest.fixture(scope="session")
def stack() -> str:
    """Make sure Mosquitto, Kafka and InfluxDB run (starting them through deploy/native/up)."""
    return ensure_stack_up()


@pytest.fixture
def settings(stack: str) -> Iterator[Settings]:
    """Settings isolated for one test: its own Kafka topics (prefixed) and InfluxDB buckets."""
    tag = uuid.uuid4().hex[:10]
    base = Settings()
    isolated = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"t{tag}."}),
            "influx": base.influx.model_copy(
                update={"bucket_raw": f"telemetry-{tag}", "bucket_compliance": f"compliance-{tag}"}
            ),
        }
    )
    topics = create_topics(isolated)
    with influx_client(isolated) as client:
        api = client.buckets_api()
        buckets = [
            api.create_bucket(bucket_name=name, org=isolated.influx.org,
                              retention_rules=BucketRetentionRules(type="expire", every_seconds=0))
            for name in (isolated.influx.bucket_raw, isolated.influx.bucket_compliance)
        ]
    yield isolated
    delete_topics(isolated, topics)
    with influx_client(isolated) as client:
        for bucket in buckets:
            client.buckets_api().delete_bucket(bucket)
