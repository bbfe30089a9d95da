"""The city demo: a simulated day of Laoshan through the real pipeline, then what arrived where.

Each run has Kafka topics of its own (`demo<run>.telemetry.<domain>`, ...; the previous run's are
deleted) and the buckets `demo-telemetry` / `demo-compliance` (emptied at the start), so what it counts
is its own: earlier runs, tests or a live pipeline on the same stack cannot change its figures.
Starts a bridge, a processor and the alert router under supervision (logs in .stack/logs/), with a
webhook receiver, an SMTP sink and an MQTT subscriber of its own; publishes yesterday (local time) for
all five domains, waits until the processors have committed every record, closes the alert loop
(sensors fall silent, offline alerts fire, are acknowledged and resolve: smartcity/demoloop.py),
prints per domain what was sent, what Kafka and InfluxDB hold, the plan indicators against their
targets and the alert deliveries with MTTA / MTTR, renders the city wall to .stack/wall.png; then
stops the three processes.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from influxdb_client import BucketRetentionRules
from kafka import KafkaAdminClient
from rich.console import Console
from rich.table import Table

from infra.clients import influx_client
from infra.flow import end_offsets, group_lag
from infra.settings import Settings, stack_dir
from infra.stack import create_topics, delete_topics
from simulators.engine import MODELS, SimOptions, Simulation
from simulators.publisher import Publisher
from smartcity.demoloop import Receivers, Supervisor, close_the_loop, free_port, report_loop, router_env

LOCAL = 8 * 3600
STALE_AFTER = 15.0   # seconds of silence before the demo's processor reports a sensor offline
READY = {"demo-bridge": "event=mqtt_connected", "demo-alerts": "event=partitions_assigned"}   # before publishing
DEMO_TOPICS = re.compile(r"^demo\d{10}\.")
BUCKETS = ("demo-telemetry", "demo-compliance")


def isolate(settings: Settings, run: str) -> Settings:
    """The demo's own settings: topics `demo<run>.…` (created; earlier runs' deleted), buckets emptied."""
    own = settings.model_copy(update={
        "kafka": settings.kafka.model_copy(update={"topic_prefix": f"demo{run}."}),
        "influx": settings.influx.model_copy(update={"bucket_raw": BUCKETS[0], "bucket_compliance": BUCKETS[1]})})
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    try:
        old = [t for t in admin.list_topics() if DEMO_TOPICS.match(t)]
    finally:
        admin.close()
    if old:
        delete_topics(settings, old)
    create_topics(own)
    with influx_client(settings) as client:
        api = client.buckets_api()
        for name in BUCKETS:
            if (bucket := api.find_bucket_by_name(name)) is not None:
                api.delete_bucket(bucket)
            api.create_bucket(bucket_name=name, org=settings.influx.org,
                              retention_rules=BucketRetentionRules(type="expire", every_seconds=0))
    return own


def _raw_counts(settings: Settings, start: int, stop: int) -> dict[str, int]:
    flux = (f'from(bucket: "{settings.influx.bucket_raw}") |> range(start: time(v: {start * 10**9}), '
            f'stop: time(v: {stop * 10**9})) |> group(columns: ["_measurement", "sensor"]) '
            '|> distinct(column: "_time") |> map(fn: (r) => ({_measurement: r._measurement, _value: 1})) '
            '|> group(columns: ["_measurement"]) |> sum()')
    with influx_client(settings) as client:
        return {r.values["_measurement"]: int(r.get_value()) for t in client.query_api().query(flux) for r in t.records}


def plan_report(settings: Settings, start: int, stop: int) -> Table:
    """Every plan target of the plan file against the simulated day's figure (judged by the target stored
    with it: the entry in force on that local day), and "Will we make it?" for the cumulative ones."""
    from dashboards.preview import STATE_TEXT, latest_indicators, standings

    table = Table(title="plan targets (district, the simulated day) - will we make it?")
    for col in ("domain", "target", "value", "plan", "state", "year-end outlook"):
        table.add_column(col)
    colour = {"met": "green", "missed": "red", "baseline-not-set": "yellow"}
    for s in standings(latest_indicators(settings, start * 10**9, stop * 10**9)):
        state = STATE_TEXT[s.state][0]
        table.add_row(s.target.domain, s.target.title_en, s.shown, s.target_text()[0],
                      f"[{colour[s.state]}]{state}[/]" if s.state in colour else state,
                      s.outlook_text()[0] or s.target.not_measured)
    return table


def run_demo(settings: Settings, sensors: int = 10, interval: int = 300, console: Console | None = None) -> int:
    """Run the demo; returns 0 when every reading sent reached InfluxDB."""
    console = console or Console()
    logs = stack_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = time.strftime("%m%d%H%M%S")
    settings = isolate(settings, run)
    console.print(f"this run's data: Kafka topics {settings.kafka.topic_prefix}*, InfluxDB buckets "
                  f"{' and '.join(BUCKETS)} (kept until the next demo)")
    day = (int(time.time()) + LOCAL) // 86400 - 1
    start, stop = day * 86400 - LOCAL, (day + 1) * 86400 - LOCAL
    domains = list(MODELS)
    topics = [settings.kafka.telemetry_topic(d) for d in domains] + [settings.kafka.deadletter_topic,
                                                                      settings.kafka.alerts_topic]
    before = end_offsets(settings, topics)
    receivers = Receivers(settings)
    supervisor = start_children(console, logs, receivers, settings, run)
    try:
        supervisor.wait_ready(READY)
        options = SimOptions(domains=domains, sensors=sensors, ticks=86400 // interval, interval=interval, rate=0,
                             seed=2026, start_ns=start * 10**9, faults={"spike": 0.002, "malformed": 0.002})
        console.print(f"[bold]simulating[/bold] {time.strftime('%Y-%m-%d', time.gmtime(start + LOCAL))} (local) for "
                      f"{', '.join(domains)}: {sensors} sensors each, a reading every {interval // 60} min")
        publisher = Publisher(settings, client_prefix="demo")
        stats = Simulation(options).run(publisher)
        publisher.wait()
        publisher.close()
        sent = stats.summary()
        console.print(f"published {sent['messages']:,} MQTT messages in {sent['elapsed_s']} s "
                      f"({sent['messages_per_s']:,} msg/s); faults injected: "
                      f"{ {k: v for k, v in sent['faults'].items() if v} }")
        valid = sent["readings"] - sent["faults"]["spike"] - sent["faults"]["malformed"]
        deadline = time.monotonic() + 600
        telemetry = [settings.kafka.telemetry_topic(d) for d in domains]
        with console.status("waiting until the processors have committed every record") as status:
            while time.monotonic() < deadline:
                lag = group_lag(settings, "demo-processors", telemetry)
                if lag == 0:
                    break
                status.update(f"waiting until the processors have committed every record ({lag:,} to go)")
                time.sleep(2)
        loop = close_the_loop(settings, console, receivers, domains, sensors, STALE_AFTER)
    finally:
        down = supervisor.stop()
        receivers.close()
    after = end_offsets(settings, topics)
    stored = _raw_counts(settings, start, stop)
    table = Table(title="what arrived where", caption="Kafka may hold a reading twice (at-least-once: MQTT redelivers "
                  "what the bridge left unacknowledged at a full window); InfluxDB keeps each reading once, by its "
                  "point identity; sent - InfluxDB = the invalid readings, dead-lettered")
    for col in ("domain", "readings sent", "Kafka telemetry.<domain>", "InfluxDB telemetry"):
        table.add_column(col, justify="right")
    for d in domains:
        t = settings.kafka.telemetry_topic(d)
        table.add_row(d, f"{sent['by_domain'].get(d, 0):,}", f"{after[t] - before[t]:,}", f"{stored.get(d, 0):,}")
    console.print(table)
    dead = after[settings.kafka.deadletter_topic] - before[settings.kafka.deadletter_topic]
    events = after[settings.kafka.alerts_topic] - before[settings.kafka.alerts_topic]
    console.print(f"dead letters (malformed + out-of-range, kept with reasons): {dead:,}; "
                  f"rule observations to alerts.events: {events:,}")
    console.print(plan_report(settings, start, stop))
    from dashboards.preview import render

    picture = stack_dir() / "wall.png"
    render(picture, settings, start * 10**9, stop * 10**9)
    console.print(f"city wall picture: {picture}  (Grafana users: docker compose -f deploy/docker-compose.yml up)")
    complete = sum(stored.values()) >= valid
    console.print("[green]every valid reading reached InfluxDB[/green]" if complete else
                  f"[red]only {sum(stored.values()):,} of {valid:,} readings reached InfluxDB; see {logs}[/red]")
    loop_closed = report_loop(console, settings, receivers, loop, supervisor, down)
    console.print(f"logs: {logs}  |  stack: smartcity stack status  |  stop: make stop")
    return 0 if complete and loop_closed else 1


def start_children(console: Console, logs: Path, receivers: Receivers, settings: Settings, run: str) -> Supervisor:
    """The bridge (a share group and session of this run's, gone 5 min after it), a processor (short stale
    timer, so the loop can close) and the alert router with the demo's own receivers, under supervision."""
    port = free_port()
    supervisor = Supervisor(console, logs, {**router_env(receivers), **settings.child_env()})
    supervisor.start("demo-bridge", ["bridge", "--client-id", f"demo{run}-bridge", "--group", f"demo{run}",
                                     "--session-expiry", "300", "--metrics-port", "0"])
    supervisor.start("demo-processor", ["process", "--group", "demo-processors", "--stale-after", str(STALE_AFTER)])
    supervisor.start("demo-alerts", ["alerts", "serve", "--config", str(receivers.config(logs / "demo-alerts.toml", port)),
                                     "--group", "demo-alerts", "--instance", f"demo{run}", "--session-expiry", "300",
                                     "--http-port", str(port)])
    return supervisor
