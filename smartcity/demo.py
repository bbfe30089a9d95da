"""The city demo: two simulated days of Laoshan through the real pipeline, then what arrived where.

Each run has Kafka topics of its own (`demo<run>.telemetry.<domain>`, ...; the previous run's are
deleted) and the buckets `demo-telemetry` / `demo-compliance` (emptied at the start), so what it counts
is its own: earlier runs, tests or a live pipeline on the same stack cannot change its figures.
Starts a bridge, a processor and the alert router under supervision (logs in .stack/logs/), with a
webhook receiver, an SMTP sink and an MQTT subscriber of its own (the router runs the deployed rule
policies of deploy/config/alerts.toml); publishes the scenario (default `demo-day`,
simulators/scenarios.py: the day before yesterday with a plan-threshold episode in every domain,
yesterday the recovery) while a duty officer acknowledges each breach through its signed link as it
fires, waits until the processors have committed every record, closes the sensor loop (sensors fall
silent, offline alerts fire, are acknowledged and resolve: smartcity/demoloop.py), prints per domain
what was sent, what Kafka and InfluxDB hold, the plan indicators against their targets, and checks the
scenario's manifest against what the subscribers received (smartcity/democheck.py): the per-domain
breach table, failing when an expected alert is missing, late, undelivered, unacknowledged or
unresolved, or one fired that no episode explains. Renders the city wall to .stack/wall.png; then
stops the three processes.
"""
from __future__ import annotations

import re
import sys
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
from simulators.base import Sensors
from simulators.engine import MODELS, SimOptions, Simulation
from simulators.publisher import Publisher
from simulators.scenarios import scenario as get_scenario
from smartcity.democheck import check
from smartcity.demoloop import (
    DEPLOYED_RULES,
    DutyOfficer,
    Receivers,
    Supervisor,
    close_the_loop,
    free_port,
    report_breaches,
    report_loop,
    router_env,
)

LOCAL = 8 * 3600
STALE_AFTER = 30.0   # seconds of silence before the demo's processor reports a sensor offline (> a duty pause)
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
    from dashboards.alertloop import loop_stats
    from dashboards.preview import STATE_TEXT, latest_indicators, standings, why_red

    table = Table(title="plan targets (district, the last simulated day) - will we make it?")
    for col in ("domain", "target", "value", "plan", "state", "year-end outlook / why red"):
        table.add_column(col)
    colour = {"met": "green", "missed": "red", "baseline-not-set": "yellow"}
    loop = loop_stats(settings)
    for s in standings(latest_indicators(settings, start * 10**9, stop * 10**9)):
        state = STATE_TEXT[s.state][0]
        why = why_red(s, loop)
        table.add_row(s.target.domain, s.target.title_en, s.shown, s.target_text()[0],
                      f"[{colour[s.state]}]{state}[/]" if s.state in colour else state,
                      "; ".join(filter(None, [s.outlook_text()[0] or s.target.not_measured, why and why[0]])))
    return table


def offline_expected(domains: list[str], sensors: int) -> list[dict]:
    """The sensor loop's alerts: every sensor but the daily-reporting plants falls silent once, at the end."""
    placed = {d: Sensors.place(d, sensors) for d in domains}
    return [{"rule": f"{d}.offline", "entity": str(sid), "domain": d, "episode": "silence", "earliest": None,
             "latest": None, "due": None, "resolves_after": None, "resolves_by": None}
            for d, p in placed.items() for sid, kind in zip(p.ids, p.kind) if kind != "plant"]


def run_demo(settings: Settings, sensors: int = 10, interval: int = 600, console: Console | None = None,
             scenario: str = "demo-day", domains: list[str] | None = None, rules: Path = DEPLOYED_RULES,
             silence: bool = True) -> int:
    """Run the demo; returns 0 when every reading sent reached InfluxDB, the sensor loop closed and the
    scenario's manifest check passed. `rules`: the alert config whose rule policies the router runs;
    `silence`: end with the sensor loop (all sensors fall silent and come back), else keep them fresh."""
    # piped into a log or CI (no terminal), rich would cut the tables to 80 columns: give them room
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    logs = stack_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = time.strftime("%m%d%H%M%S")
    settings = isolate(settings, run)
    console.print(f"this run's data: Kafka topics {settings.kafka.topic_prefix}*, InfluxDB buckets "
                  f"{' and '.join(BUCKETS)} (kept until the next demo)")
    plan = get_scenario(scenario)
    day = (int(time.time()) + LOCAL) // 86400 - plan.days
    start, stop = day * 86400 - LOCAL, (day + plan.days) * 86400 - LOCAL
    domains = domains or list(MODELS)
    topics = [settings.kafka.telemetry_topic(d) for d in domains] + [settings.kafka.deadletter_topic,
                                                                      settings.kafka.alerts_topic]
    before = end_offsets(settings, topics)
    receivers = Receivers(settings)
    port = free_port()
    config = receivers.config(logs / "demo-alerts.toml", port, rules)
    supervisor = start_children(console, logs, receivers, settings, run, config, port,
                                STALE_AFTER if silence else 3600.0)
    telemetry = [settings.kafka.telemetry_topic(d) for d in domains]
    try:
        supervisor.wait_ready(READY)
        options = SimOptions(domains=domains, sensors=sensors, ticks=plan.days * 86400 // interval, interval=interval,
                             rate=0, seed=2026, start_ns=start * 10**9, faults={"spike": 0.002, "malformed": 0.002},
                             scenario=scenario)
        sim = Simulation(options)
        expected = sim.expected()
        console.print(f"[bold]simulating[/bold] {plan.name}: {plan.description}, from "
                      f"{time.strftime('%Y-%m-%d', time.gmtime(start + LOCAL))} (local) for {', '.join(domains)}: "
                      f"{sensors} sensors each, a reading every {interval // 60} min")
        for e in sim.scenario.episodes if sim.scenario else []:
            console.print(f"  episode [bold]{e.name}[/bold] ({e.domain}, {e.site}): {e.text_en} / {e.text_zh}")
        publisher = Publisher(settings, client_prefix="demo")
        officer = DutyOfficer(settings, receivers, publisher, expected, sim.start, interval, telemetry, "demo-processors")
        try:
            stats = sim.run(publisher, officer)
            publisher.wait()
        finally:
            publisher.close()
        sent = stats.summary()
        console.print(f"published {sent['messages']:,} MQTT messages in {sent['elapsed_s']} s "
                      f"({sent['messages_per_s']:,} msg/s); faults injected: "
                      f"{ {k: v for k, v in sent['faults'].items() if v} }")
        valid = sent["readings"] - sent["faults"]["spike"] - sent["faults"]["malformed"]
        deadline = time.monotonic() + 600
        with console.status("waiting until the processors have committed every record") as status:
            while time.monotonic() < deadline:
                lag = group_lag(settings, "demo-processors", telemetry)
                if lag == 0:
                    break
                status.update(f"waiting until the processors have committed every record ({lag:,} to go)")
                time.sleep(2)
        _await_resolution(console, receivers, expected)
        officer.sweep()
        officer.close()
        loop = close_the_loop(settings, console, receivers, domains, sensors, STALE_AFTER) if silence else None
        time.sleep(3)   # the grouping window: the last acknowledgements and resolutions through
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
    loop_closed = report_loop(console, settings, receivers, loop, supervisor, down) if loop else not down
    for late in officer.late:
        console.print(f"[yellow]duty officer: {late} (acknowledged after the day instead)[/yellow]")
    verdict = check(expected + (offline_expected(domains, sensors) if silence else []), receivers.episodes(),
                    receivers.wanted(config))
    proven = report_breaches(console, verdict)
    console.print(f"logs: {logs}  |  stack: smartcity stack status  |  stop: make stop")
    return 0 if complete and loop_closed and proven else 1


def _await_resolution(console: Console, receivers: Receivers, expected: list[dict], seconds: float = 60) -> None:
    """Wait until every expected alert that fired has resolved (the recovery day's last windows)."""
    deadline = time.monotonic() + seconds
    with console.status("waiting for the episodes' alerts to resolve"):
        while time.monotonic() < deadline:
            episodes = {(s.rule, s.entity): s for s in receivers.episodes() if "firing" in s.kinds}
            if all("resolved" in episodes[k].kinds for k in ((x["rule"], x["entity"]) for x in expected)
                   if k in episodes):
                return
            time.sleep(1)


def start_children(console: Console, logs: Path, receivers: Receivers, settings: Settings, run: str,
                   config: Path, port: int, stale_after: float) -> Supervisor:
    """The bridge (a share group and session of this run's, gone 5 min after it), a processor (short stale
    timer, so the loop can close) and the alert router (`config`, links and HTTP on `port`), under supervision."""
    supervisor = Supervisor(console, logs, {**router_env(receivers), **settings.child_env()})
    supervisor.start("demo-bridge", ["bridge", "--client-id", f"demo{run}-bridge", "--group", f"demo{run}",
                                     "--session-expiry", "300", "--metrics-port", "0"])
    supervisor.start("demo-processor", ["process", "--group", "demo-processors", "--stale-after", str(stale_after)])
    supervisor.start("demo-alerts", ["alerts", "serve", "--config", str(config),
                                     "--group", "demo-alerts", "--instance", f"demo{run}", "--session-expiry", "300",
                                     "--http-port", str(port)])
    return supervisor
