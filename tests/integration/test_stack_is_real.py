"""The stack is real: a round trip through each service with its own client library."""
from __future__ import annotations

import queue
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import Point
from influxdb_client.client.write_api import SYNCHRONOUS

from infra.clients import influx_client, kafka_consumer, kafka_producer, mqtt_client, mqtt_connect
from infra.settings import Settings

pytestmark = pytest.mark.integration


def test_mqtt_message_published_by_a_device_reaches_the_bridge_account(settings: Settings) -> None:
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    topic = f"city/air/test-{uuid.uuid4().hex[:6]}/s1/up"
    sub = mqtt_client(settings, username="bridge")
    sub.on_message = lambda c, u, msg: got.put(msg)
    subscribed = queue.Queue()
    sub.on_subscribe = lambda c, u, mid, rc, props: subscribed.put(rc)
    mqtt_connect(sub, settings)
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    assert not subscribed.get(timeout=10)[0].is_failure
    pub = mqtt_client(settings, username="air")
    mqtt_connect(pub, settings)
    pub.loop_start()
    pub.publish(topic, b'{"pm25": 12.5}', qos=1).wait_for_publish(10)
    msg = got.get(timeout=10)
    assert (msg.topic, msg.payload) == (topic, b'{"pm25": 12.5}')
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()


def test_kafka_record_produced_is_consumed_back(settings: Settings) -> None:
    topic = settings.kafka.telemetry_topic("air")
    producer = kafka_producer(settings)
    producer.send(topic, key=b"sensor-1", value=b"reading").get(timeout=30)
    producer.close()
    consumer = kafka_consumer(settings, None, topic, consumer_timeout_ms=10_000)
    records = [(r.key, r.value) for r in consumer]
    consumer.close()
    assert records == [(b"sensor-1", b"reading")]


def test_influx_point_written_is_queried_back_with_flux(settings: Settings) -> None:
    ts = time.time_ns()
    with influx_client(settings) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            settings.influx.bucket_raw,
            record=Point("air").tag("sensor", "s1").field("pm25", 41.5).time(ts),
        )
        tables = client.query_api().query(
            f'from(bucket: "{settings.influx.bucket_raw}") |> range(start: -1h) '
            '|> filter(fn: (r) => r._measurement == "air")'
        )
    rows = [(r.get_field(), r.get_value(), r.values["sensor"]) for t in tables for r in t.records]
    assert rows == [("pm25", 41.5, "s1")]
