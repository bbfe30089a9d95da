"""The peer: Telegraf v1.37 built by deploy/native/telegraf.sh, configured as fairly as we know how.

MQTT -> Kafka: `mqtt_consumer` (QoS 1, persistent session, fixed client id, default delivery tracking:
a message is acknowledged only after the output accepted its metrics) -> `outputs.kafka` (acks=-1,
idempotent, one JSON record per reading keyed by sensor id, one topic per domain like ours).
Kafka -> InfluxDB: `kafka_consumer` (offsets marked after the write) -> `influxdb_v2` (raw points),
reading what Telegraf's own MQTT -> Kafka drain wrote.
A short flush_interval keeps Telegraf's 10 s default from dominating a drain.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from infra.settings import REPO_ROOT, Settings

SCRIPT = REPO_ROOT / "deploy" / "native" / "telegraf.sh"

AGENT = """
[agent]
  interval = "10s"
  flush_interval = "200ms"
  flush_jitter = "0s"
  metric_batch_size = {batch}
  metric_buffer_limit = {buffer}
  omit_hostname = true
  debug = false
"""


def binary() -> str:
    """Path of the cached Telegraf binary, building it the first time (about 2-10 minutes)."""
    proc = subprocess.run([str(SCRIPT), "build"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT} build failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def _q(value: str) -> str:
    """A TOML string literal."""
    return json.dumps(value)


def mqtt_to_kafka(settings: Settings, client_id: str, batch: int = 1000) -> str:
    """Config for the MQTT -> Kafka drain; the password comes from $BENCH_MQTT_PASSWORD.

    The buffer holds every metric of max_undelivered_messages (1,000) messages of 100 readings ten times
    over, so that Telegraf never drops metrics of messages it has not acknowledged yet."""
    return AGENT.format(batch=batch, buffer=1_000_000) + f"""
[[inputs.mqtt_consumer]]
  servers = [{_q(f"tcp://{settings.mqtt.host}:{settings.mqtt.port}")}]
  topics = ["city/+/+/+/up"]
  qos = 1
  persistent_session = true
  client_id = {_q(client_id)}
  username = {_q(settings.mqtt.username)}
  password = "${{BENCH_MQTT_PASSWORD}}"
  connection_timeout = "30s"
  data_format = "json"
  json_time_key = "ts"
  json_time_format = "2006-01-02T15:04:05.999999999Z07:00"
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "city/+/+/+/up"
    tags = "_/domain/site/sensor_id/_"

[[outputs.kafka]]
  brokers = [{_q(settings.kafka.bootstrap)}]
  topic = {_q(settings.kafka.topic_prefix + "telemetry")}
  topic_suffix = {{ method = "tags", keys = ["domain"], separator = "." }}
  routing_tag = "sensor_id"
  required_acks = -1
  idempotent_writes = true
  max_retry = 10
  data_format = "json"
  json_timestamp_units = "1ns"
"""


def kafka_to_influx(settings: Settings, topics: list[str], group: str, bucket: str, batch: int = 5000) -> str:
    """Config for Kafka -> InfluxDB raw writes of the records Telegraf's own MQTT -> Kafka drain wrote
    (its JSON serializer: fields, name, tags, timestamp); the token comes from $BENCH_INFLUX_TOKEN."""
    return AGENT.format(batch=batch, buffer=200_000) + f"""
[[inputs.kafka_consumer]]
  brokers = [{_q(settings.kafka.bootstrap)}]
  topics = {json.dumps(topics)}
  consumer_group = {_q(group)}
  offset = "oldest"
  kafka_version = "3.9.0"
  max_undelivered_messages = {batch}
  data_format = "json"
  json_name_key = "tags_domain"
  tag_keys = ["tags_sensor_id", "tags_site", "tags_domain"]
  json_time_key = "timestamp"
  json_time_format = "unix_ns"

[[outputs.influxdb_v2]]
  urls = [{_q(settings.influx.url)}]
  token = "${{BENCH_INFLUX_TOKEN}}"
  organization = {_q(settings.influx.org)}
  bucket = {_q(bucket)}
"""


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
