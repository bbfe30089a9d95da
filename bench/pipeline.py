"""The pipeline cases of issue 14, each tool on the same pre-generated messages in one run.

- components: each service alone (Mosquitto QoS 1 pub/sub, Kafka produce/consume, InfluxDB writes);
- mqtt-kafka: N messages pre-queued in a persistent QoS 1 session, then drained, timed from process
  start to the last record in Kafka: Telegraf, one `smartcity bridge`, two bridges in one share group;
- kafka-influx: the bridge's records of the 100-reading run, read by Telegraf (raw writes) and by
  `smartcity process` (raw writes + compliance), timed from process start until the group's
  committed offsets reach the end of the topics (both commit only what InfluxDB accepted);
- latency: bridge + processor under a fixed `smartcity simulate` load, with timestamped marker
  readings polled until queryable in InfluxDB.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable

from bench import telegraf
from bench.harness import Bench, KafkaCounter, Measured, wait_until_count
from infra.clients import influx_client, kafka_producer, mqtt_client, mqtt_connect
from infra.settings import Settings
from simulators.engine import MODELS, SimOptions, Simulation
from simulators.publisher import Publisher

PRIME_TIMEOUT = 60.0
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class Messages:
    """Pre-generated (topic, payload) pairs of one message shape (seeded: the same every run)."""

    shape: str
    items: list[tuple[str, bytes]]
    readings: int
    field: str          # a value field every domain-air reading carries (for counting points)
    field_count: int    # readings that carry it
    records: int        # Kafka records the bridge makes of them (one per message and sensor)


class _Collect:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.items.append((topic, payload))


def generate(shape: str, messages: int, per_message: int, seed: int = 14) -> Messages:
    """`messages` native messages of `per_message` readings each over all domains (seeded)."""
    domains = list(MODELS)
    # Few ticks, many sensors: the models step all sensors of a domain at once, so ticks cost the time.
    per_sensor = 2 if per_message > 1 else 1
    sensors = max(1, -(-messages // (per_sensor * len(domains)))) if per_message > 1 else \
        max(1, round((messages / len(domains)) ** 0.5))
    ticks = -(-messages * per_message // (sensors * len(domains)))
    sink = _Collect()
    stats = Simulation(SimOptions(domains=domains, sensors=sensors, ticks=ticks, rate=0, seed=seed,
                                  batch=per_message)).run(sink)
    items = sink.items[:messages]
    readings = sum(len(_readings(p)) for _, p in items)
    field_count = sum(1 for t, p in items if t.startswith("city/air/") for r in _readings(p) if "pm25" in r["values"])
    del stats
    return Messages(shape, items, readings, "pm25", field_count, sum(_bridge_records(t, p) for t, p in items))


def _readings(payload: bytes) -> list[dict]:
    doc = json.loads(payload)
    return doc if isinstance(doc, list) else [doc]


def _bridge_records(topic: str, payload: bytes) -> int:
    """Runs of readings of one sensor at one site in a message: the bridge's records for it."""
    _, _, site, sensor, _ = topic.split("/")
    keys = [(r.get("sensor_id", sensor), r.get("site", site)) for r in _readings(payload)]
    return 1 + sum(a != b for a, b in zip(keys, keys[1:]))


def publish(settings: Settings, items: list[tuple[str, bytes]], client_prefix: str) -> float:
    """Publish every message QoS 1 and wait for the broker's acknowledgements; returns msg/s."""
    pub = Publisher(settings, client_prefix=client_prefix)
    started = time.perf_counter()
    try:
        for topic, payload in items:
            pub.publish(topic, payload)
        pub.wait(600)
    finally:
        pub.close()
    return len(items) / (time.perf_counter() - started)


# -- MQTT -> Kafka ----------------------------------------------------------------------------------

def _launch_bridges(b: Bench, s: Settings, name: str, count: int) -> list[Measured]:
    return [b.smartcity(f"{name}-{i}", s, "bridge", "--client-id", f"bench-{b.tag}-{name}-{i}",
                        "--group", f"bench{b.tag}{name}", "--session-expiry", "3600", "--metrics-port", "0",
                        *(["--shared"] if count > 1 else []))
            for i in range(count)]


def _launch_telegraf(b: Bench, s: Settings, name: str) -> list[Measured]:
    conf = telegraf.write_config(b.workdir / f"{name}.toml", telegraf.mqtt_to_kafka(s, f"bench-{b.tag}-{name}"))
    password = s.mqtt.password_for(s.mqtt.username)
    env = {**b.env(s), "BENCH_MQTT_PASSWORD": password.get_secret_value() if password else ""}
    return [b.spawn(name, [b.telegraf, "--config", str(conf)], env)]


def _prime(b: Bench, s: Settings, launch, counter: KafkaCounter) -> None:
    """Start the tool once so that its persistent session(s) and subscription exist (proven by probe
    messages reaching Kafka), then SIGKILL it: what is published next waits in its session."""
    procs = launch()
    pub = Publisher(s, client_prefix=f"bench-probe-{b.tag}")
    try:
        _probe(pub, counter, procs, 1)
        time.sleep(3.0)  # the other members of a share group started with the first one
        _probe(pub, counter, procs, 2 * len(procs))
    finally:
        pub.close()
        for p in procs:
            p.stop(signal.SIGKILL)


def _probe(pub: Publisher, counter: KafkaCounter, procs: list[Measured], count: int) -> None:
    """Publish single-reading probes (every 0.5 s until one reaches Kafka, then `count` - 1 more) and
    wait until Kafka holds all of them, so that none is left queued for the timed run."""
    deadline = time.monotonic() + PRIME_TIMEOUT
    before, sent = counter.records(), 0
    while counter.records() < before + min(sent, count) or sent < count:
        if time.monotonic() > deadline or not all(p.alive() for p in procs):
            raise RuntimeError(f"{procs[0].name} never forwarded a probe message: {procs[0].tail()}")
        if counter.records() == before or sent < count:
            pub.publish("city/air/bench/bench-probe/up",
                        json.dumps({"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "values": {"pm25": 10.0}}).encode())
            sent += 1
        time.sleep(0.5)
    pub.wait(30)
    settle = time.monotonic() + 10
    while counter.records() < before + sent and time.monotonic() < settle:
        time.sleep(0.2)


def drain(b: Bench, msgs: Messages, tool: str, count: int = 1, timeout: float = 600, stall: float = 90,
          on_start: Callable[[list[Measured]], None] | None = None) -> dict:
    """Pre-queue `msgs` in the tool's persistent session(s), then time the drain into Kafka."""
    name = f"{msgs.shape}-{tool}{count if tool == 'bridge' else ''}"
    s = b.settings(name.replace("-", ""))
    topics = [s.kafka.telemetry_topic(d) for d in MODELS]

    def launch() -> list[Measured]:
        return _launch_telegraf(b, s, name) if tool == "telegraf" else _launch_bridges(b, s, name, count)

    counter = KafkaCounter(s, topics + [s.kafka.deadletter_topic])
    try:
        _prime(b, s, launch, counter)
        baseline = counter.records()
        publish_rate = publish(s, msgs.items, f"bench-pub-{b.tag}")
        procs = launch()
        if on_start:
            on_start(procs)
        expected = msgs.records if tool == "bridge" else msgs.readings
        elapsed, got, usage = wait_until_count(counter.records, baseline + expected, procs, timeout=timeout,
                                               stall=stall)
        for p in procs:
            p.stop()
    finally:
        counter.close()
    out = {"tool": tool if tool == "telegraf" else f"bridge x{count}", "messages": len(msgs.items),
           "readings": msgs.readings, "records": got - baseline, "publish_msg_per_s": round(publish_rate),
           "usage": usage, "settings": s}
    if elapsed is not None:
        out.update(seconds=round(elapsed, 2), msg_per_s=round(len(msgs.items) / elapsed),
                   readings_per_s=round(msgs.readings / elapsed))
        _per_million(out, msgs.readings)
    elif usage.get("partial_s"):  # stalled: the rate up to the last record that did arrive
        out.update(stalled=True, seconds_to_last_record=usage["partial_s"],
                   readings_per_s_before_stall=round(out["records"] / usage["partial_s"]))
    return out


def _per_million(out: dict, readings: int) -> None:
    """CPU seconds per million readings for every process of a result (its `usage`)."""
    for name, u in out["usage"].items():
        if isinstance(u, dict) and u.get("cpu_s") is not None:
            u["cpu_s_per_million_readings"] = round(u["cpu_s"] / readings * 1e6, 1)


# -- Kafka -> InfluxDB ------------------------------------------------------------------------------

def count_field(s: Settings, bucket: str, field: str) -> int:
    """How many values of `field` a bucket holds (all time): did the tool write every reading?"""
    flux = (f'from(bucket: "{bucket}") |> range(start: 0) |> filter(fn: (r) => r._field == "{field}")'
            ' |> group() |> count()')
    with influx_client(s, timeout_ms=120_000) as client:
        tables = client.query_api().query(flux)
    return int(sum(r.get_value() for t in tables for r in t.records))


def sink(b: Bench, source: Settings, msgs: Messages, tool: str, timeout: float = 900, stall: float = 90) -> dict:
    """Kafka -> InfluxDB from the topics of `source` into fresh buckets: each tool reads what its own
    MQTT -> Kafka drain of the same messages wrote (Telegraf one JSON metric per reading, the bridge
    one column record per message)."""
    name = f"sink{tool}"
    s = b.settings(name, topics=False, buckets=True)
    s = s.model_copy(update={"kafka": source.kafka})
    topics = [s.kafka.telemetry_topic(d) for d in MODELS]
    group = f"bench{b.tag}{name}"
    counter = KafkaCounter(s, topics)
    total = counter.records()
    if tool == "telegraf":
        conf = telegraf.write_config(b.workdir / f"{name}.toml",
                                     telegraf.kafka_to_influx(s, topics, group, s.influx.bucket_raw))
        env = {**b.env(s), "BENCH_INFLUX_TOKEN": s.influx.token_value()}
        procs = [b.spawn(name, [b.telegraf, "--config", str(conf)], env)]
        field = f"fields_values_{msgs.field}"
    else:
        procs = [b.smartcity(name, s, "process", "--group", group)]
        field = msgs.field
    try:
        elapsed, got, usage = wait_until_count(lambda: counter.committed(group), total, procs, timeout=timeout,
                                               stall=stall)
        for p in procs:
            p.stop()
    finally:
        counter.close()
    out = {"tool": "telegraf" if tool == "telegraf" else "smartcity process", "records": total, "committed": got,
           "readings": msgs.readings, "usage": usage,
           "points_checked": {"field": field, "written": count_field(s, s.influx.bucket_raw, field),
                              "expected": msgs.field_count}}
    if elapsed is not None:
        out.update(seconds=round(elapsed, 2), readings_per_s=round(msgs.readings / elapsed))
        _per_million(out, msgs.readings)
    return out


# -- each component alone ---------------------------------------------------------------------------

def mosquitto_alone(b: Bench, msgs: Messages) -> dict:
    """QoS 1 publish and subscribe at once on the private broker: received messages/s."""
    s = Settings()
    got = threading.Event()
    received = [0]
    done_at = [0.0]

    def on_message(c, u, m) -> None:  # noqa: ANN001
        received[0] += 1
        if received[0] >= len(msgs.items):
            done_at[0] = time.perf_counter()
            got.set()

    sub = mqtt_client(s, f"bench-sub-{b.tag}", username="bridge")
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda c, *a: c.subscribe("city/+/+/+/up", qos=1)
    mqtt_connect(sub, s)
    sub.loop_start()
    try:
        if not subscribed.wait(15):
            raise RuntimeError("the benchmark subscriber did not get its subscription acknowledged")
        started = time.perf_counter()
        pub_rate = publish(s, msgs.items, f"bench-pub-{b.tag}")
        got.wait(300)
        rate = len(msgs.items) / (done_at[0] - started) if done_at[0] else None
    finally:
        sub.disconnect()
        sub.loop_stop()
    return {"messages": len(msgs.items), "publish_msg_per_s": round(pub_rate),
            "pubsub_msg_per_s": round(rate) if rate else None, "received": received[0]}


def kafka_alone(b: Bench, records: int, value: bytes, name: str = "kafka") -> dict:
    """kafka-python (the pipeline's client) producing (acks=all, idempotent, as ours) then consuming."""
    s = b.settings(name)
    topic = s.kafka.telemetry_topic("air")
    producer = kafka_producer(s)
    started = time.perf_counter()
    for i in range(records):
        producer.send(topic, key=f"s{i % 500}".encode(), value=value)
    producer.flush(300)
    produce = records / (time.perf_counter() - started)
    producer.close()
    from infra.clients import kafka_consumer

    consumer = kafka_consumer(s, f"bench{b.tag}{name}", topic, max_poll_records=5000, auto_offset_reset="earliest")
    got, started = 0, time.perf_counter()
    deadline = started + 300
    while got < records and time.perf_counter() < deadline:
        got += sum(len(v) for v in consumer.poll(timeout_ms=500).values())
    consume = got / (time.perf_counter() - started)
    consumer.close()
    return {"records": records, "record_bytes": len(value), "produce_records_per_s": round(produce),
            "consume_records_per_s": round(consume), "client": "kafka-python (gzip, acks=all, idempotent)"}


def influx_alone(b: Bench, msgs: Messages, points: int, batch: int = 5000) -> dict:
    """Synchronous batched writes of pre-built line protocol (what a writer can expect at best)."""
    from influxdb_client.client.write_api import SYNCHRONOUS

    s = b.settings("influx", topics=False, buckets=True)
    lines = []
    for topic, payload in msgs.items:
        _, domain, site, sensor, _ = topic.split("/")
        for r in _readings(payload):
            fields = ",".join(f"{k}={v!r}" for k, v in r["values"].items())
            lines.append(f"{domain},sensor={sensor},site={site} {fields} {len(lines)}")
            if len(lines) >= points:
                break
        if len(lines) >= points:
            break
    with influx_client(s, timeout_ms=120_000) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        started = time.perf_counter()
        for i in range(0, len(lines), batch):
            write.write(s.influx.bucket_raw, s.influx.org, "\n".join(lines[i:i + batch]))
        rate = len(lines) / (time.perf_counter() - started)
    return {"points": len(lines), "batch": batch, "points_per_s": round(rate)}


# -- publish -> queryable latency ---------------------------------------------------------------------

def latency(b: Bench, rate: int, seconds: int, markers_per_s: float = 2.0, profile: bool = False) -> dict:
    """Bridge + processor under `rate` readings/s of 10-reading messages for `seconds`; marker
    readings (ts = publish time) are polled until queryable in InfluxDB (`profile`: py-spy on the
    processor while the load runs)."""
    from bench.profile import Spy

    s = b.settings("lat", buckets=True)
    bridge = b.smartcity("lat-bridge", s, "bridge", "--client-id", f"bench-{b.tag}-lat", "--group",
                         f"bench{b.tag}lat", "--session-expiry", "600", "--metrics-port", "0")
    group = f"bench{b.tag}latproc"
    proc = b.smartcity("lat-process", s, "process", "--group", group)
    counter = KafkaCounter(s, [s.kafka.telemetry_topic(d) for d in MODELS])
    _wait_forwarding(b, s, counter, [bridge, proc])
    spy = Spy(proc, b.workdir / "profile-latency-processor.txt") if profile else None
    sensors = 100
    per_sensor = rate / (sensors * len(MODELS))
    # --speedup 1 from now: event time runs at the wall clock's pace, as in a live city (without it the
    # simulated clock ran ~500x faster and 5 minutes pushed 41 simulated hours through the open windows)
    sim = b.smartcity("lat-simulate", s, "simulate", "--domains", "all", "--sensors", str(sensors), "--rate",
                      f"{per_sensor:g}", "--batch", "10", "--duration", f"{seconds}s", "--seed", "14",
                      "--speedup", "1", "--start", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    pub = Publisher(s, client_prefix=f"bench-marker-{b.tag}")
    sent: dict[int, float] = {}
    seen: dict[int, float] = {}
    poller = threading.Thread(target=_poll_markers, args=(s, sent, seen, sim), daemon=True)
    poller.start()
    k, t0 = 0, time.time()
    try:
        while sim.alive():
            now_ns = time.time_ns() // 1000 * 1000  # InfluxDB answers in microseconds: keep them exact
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ns // 10**9)) + f".{now_ns % 10**9:09d}Z"
            sent[now_ns] = now_ns / 1e9
            pub.publish("city/air/bench/bench-marker/up",
                        json.dumps({"ts": ts, "seq": k, "values": {"pm25": float(k % 100)}}).encode())
            k += 1
            time.sleep(max(0.0, t0 + k / markers_per_s - time.time()))
        load_end = time.time()
        top = spy.stop() if spy else None
        try:
            lag = counter.records() - counter.committed(group)
        except Exception as exc:  # noqa: BLE001 - a slow broker must not cost the latency figures
            lag = f"unknown ({type(exc).__name__})"
        deadline = time.time() + 60
        while len(seen) < len(sent) and time.time() < deadline:
            time.sleep(0.5)
    finally:
        pub.close()
        counter.close()
    usage = {p.name: p.usage() for p in (bridge, proc)}
    for u in usage.values():
        u["cpu_s_per_million_readings"] = round(u["cpu_s"] / (rate * seconds) * 1e6, 1) if u["cpu_s"] else None
    for p in (sim, bridge, proc):
        p.stop()
    achieved = re.search(r"([\d,.]+) readings/s", sim.tail(6))
    in_order = [seen[t] - sent[t] for t in sorted(seen)]
    lat = sorted(in_order)
    missing = len(sent) - len(seen)
    first, second = in_order[: len(in_order) // 2], in_order[len(in_order) // 2:]
    return {"offered_readings_per_s": rate, "seconds": seconds,
            "achieved_readings_per_s": float(achieved.group(1).replace(",", "")) if achieved else None, "markers": len(sent), "markers_unseen": missing,
            "p50_s": _pct(lat, 50), "p95_s": _pct(lat, 95), "p99_s": _pct(lat, 99) if not missing else None,
            "max_s": round(lat[-1], 3) if lat else None,
            "first_half_median_s": round(statistics.median(first), 3) if first else None,
            "second_half_median_s": round(statistics.median(second), 3) if second else None,
            "processor_lag_records_at_load_end": lag, "load_ended_s": round(load_end - t0, 1),
            "usage": usage, **({"profile": top} if top is not None else {})}


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))], 3)


def _wait_forwarding(b: Bench, s: Settings, counter: KafkaCounter, procs: list[Measured]) -> None:
    """Probe until the bridge forwards (it is subscribed); the processor gets 3 s more to join its group."""
    pub = Publisher(s, client_prefix=f"bench-probe-{b.tag}")
    try:
        _probe(pub, counter, procs, 1)
    finally:
        pub.close()
    time.sleep(3)


def _poll_markers(s: Settings, sent: dict[int, float], seen: dict[int, float], sim: Measured) -> None:
    """Query InfluxDB every 0.25 s for marker readings; note the wall time each first appears."""
    flux = (f'from(bucket: "{s.influx.bucket_raw}") |> range(start: -15m) '
            '|> filter(fn: (r) => r._measurement == "air" and r.sensor == "bench-marker" and r._field == "pm25")'
            ' |> keep(columns: ["_time"])')
    with influx_client(s, timeout_ms=30_000) as client:
        api = client.query_api()
        idle_until = None
        while True:
            try:
                tables = api.query(flux)
            except Exception:  # noqa: BLE001 - a slow query is retried; the next poll catches up
                time.sleep(0.25)
                continue
            now = time.time()
            for t in tables:
                for r in t.records:
                    key = (r.get_time() - EPOCH) // dt.timedelta(microseconds=1) * 1000
                    if key in sent and key not in seen:
                        seen[key] = now
            if not sim.alive():
                idle_until = idle_until or now + 60
                if len(seen) >= len(sent) or now > idle_until:
                    return
            time.sleep(0.25)

