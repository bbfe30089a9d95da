"""`smartcity`: the command line of the pipeline (decode, stack, and the services as they land)."""
from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from infra.settings import Settings

app = typer.Typer(
    help="Laoshan smart-city telemetry pipeline: MQTT -> Kafka -> NumPy processors -> InfluxDB -> Grafana.",
    no_args_is_help=True,
    add_completion=False,
)
stack_app = typer.Typer(help="The local service stack (Mosquitto, Kafka, InfluxDB) started by deploy/native.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")
alerts_app = typer.Typer(help="The alert router and the operators' side of it: acknowledge, list, silence.",
                         no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
dashboards_app = typer.Typer(help="Grafana dashboards as code: generate the JSON, push it to a Grafana.",
                             no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")


def _run_until_signalled(service: object) -> None:
    """Run a long-lived service; SIGTERM or Ctrl-C asks it to stop cleanly (it finishes its batch)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())  # type: ignore[attr-defined]
    service.run()  # type: ignore[attr-defined]


def _require_device_profiles() -> None:
    """Stop before serving when the device-profile files (shipped + SMARTCITY_DEVICES) are invalid."""
    from schemas.devices import DeviceProfileError, load_profiles

    try:
        load_profiles()
    except DeviceProfileError as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(2)


class Format(str, Enum):
    native = "native"
    senml = "senml"
    ttn = "ttn"
    chirpstack = "chirpstack"


def _service_settings(service: str) -> Settings:
    """The settings of a pipeline service: its own least-privilege InfluxDB credentials unless
    SMARTCITY_INFLUX__SERVICE says otherwise (empty: the operator token, e.g. for tests' own buckets)."""
    from infra.settings import get_settings

    os.environ.setdefault("SMARTCITY_INFLUX__SERVICE", service)
    return get_settings()


@app.command()
def decode(
    file: Path = typer.Argument(..., help="payload file ('-' for standard input)", allow_dash=True),
    fmt: Format = typer.Option(..., "--format", "-f", help="payload format"),
    topic: Optional[str] = typer.Option(None, "--topic", "-t",
                                        help="MQTT topic it arrived on, e.g. city/air/laoshan-1/pm-07/up"),
    domain: Optional[str] = typer.Option(None, "--domain", "-d",
                                         help="validate against this domain when the topic does not say"),
    raw: bool = typer.Option(False, "--raw", help="stop after format parsing: show what the format carried"),
) -> None:
    """Decode one payload as the bridge would and print canonical readings as JSON lines.

    Exit status 2 when the payload (or any reading in it) is rejected, or the device-profile file is
    invalid; the reason goes to stderr. Exit status 1 (with "internal error") means a bug: the bridge
    would dead-letter such a message the same way.

    Example: smartcity decode -f ttn uplink.json
    """
    from dataclasses import asdict

    from infra.settings import get_settings
    from schemas.adapters import PayloadError, TopicInfo, parse, route
    from schemas.batch import validate
    from schemas.devices import DeviceProfileError, load_profiles
    from schemas.timeparse import format_ts

    payload = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    try:
        profiles = load_profiles()
        info = route(topic) if topic else TopicInfo(fmt.value)
        if topic and info.format not in (fmt.value, "status"):
            raise PayloadError(f"topic {topic!r} carries {info.format} payloads, not {fmt.value}")
        raws = parse(fmt.value, payload, info, window=get_settings().ingest.time_window(), profiles=profiles)
        result = None if raw else validate(raws, fmt.value, domain=domain)
    except (PayloadError, DeviceProfileError) as exc:
        typer.echo(f"rejected: {getattr(exc, 'reason', exc)}", err=True)
        raise typer.Exit(2)
    except Exception as exc:  # noqa: BLE001 - a bug, reported like the bridge's dead letter, not a traceback
        typer.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1)
    if result is None:
        for r in raws:
            d = asdict(r)
            d["time"] = format_ts(r.ts) if r.ts else None
            typer.echo(json.dumps(d, ensure_ascii=False))
        return
    if result.batch is not None:
        for reading in result.batch.dicts():
            typer.echo(json.dumps(reading, ensure_ascii=False))
    for reason in result.errors:
        typer.echo(f"rejected: {reason}", err=True)
    if result.errors:
        raise typer.Exit(2)


@app.command()
def bridge(
    client_id: str = typer.Option("bridge-1", help="MQTT client id; keep it stable so the broker keeps the session"),
    group: str = typer.Option("ingest", help="the bridges that watch each other: a live one adopts the session of one that stays offline (and with --shared, the share group)"),
    filters: Optional[list[str]] = typer.Option(None, "--filter", help="MQTT topic filter to subscribe (repeat; default: the four source formats). Divide the stream between bridges by giving each its own filters, e.g. --filter 'city/air/+/+/up' (the broker's ACL grants the bridge account city/+/+/+/up, not city/#)"),
    shared: bool = typer.Option(False, "--shared", help="subscribe through $share/<group>/: bridges of the group split one stream. Mosquitto (2.0.11, 2.0.21) does not restore shared subscriptions when it restarts, so messages published before the bridges resubscribe are lost; plain subscriptions (the default) are restored"),
    window: int = typer.Option(2000, min=1, max=65535, help="unacknowledged messages held at most (also sent as MQTT Receive Maximum)"),
    batch: int = typer.Option(1000, min=1, help="messages decoded and produced to Kafka together"),
    session_expiry: int = typer.Option(3600, min=1, help="seconds the broker keeps our session (and queues for it) while no bridge of the group is alive to adopt it"),
    adopt_after: float = typer.Option(60.0, min=0, help="seconds a peer of the group stays offline before a live bridge adopts and ends its session"),
    metrics_port: Optional[int] = typer.Option(9310, help="Prometheus metrics port (0: off)"),
    tls: bool = typer.Option(False, "--tls", help="connect to the TLS listener, verifying the stack's CA"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING"),
) -> None:
    """Forward MQTT readings to Kafka: validate, produce, dead-letter, then acknowledge.

    Subscribes (QoS 1, persistent session) to city/+/+/+/up, city/+/+/+/senml, v3/+/devices/+/up and
    application/+/device/+/event/up, or to the --filter list. To scale out, give each bridge of a group
    its own filters (lossless across broker restarts) or use --shared (one stream split; a broker
    restart loses what devices publish before the bridges resubscribe).
    A message is acknowledged only after Kafka accepted every record made from it. SIGTERM or Ctrl-C
    stops cleanly: take no more messages, forward and acknowledge what arrived, flush, exit 0; the
    subscription stays in the broker's session, so what is published meanwhile waits for the restart.
    A bridge of the group that stays offline longer than --adopt-after has its session adopted and
    drained by a live one, which also takes its plain filters over until it returns, so nothing waits
    for a bridge that never returns.
    """
    from infra import logs
    from ingest.bridge import SOURCE_FILTERS, Bridge, BridgeConfig

    logs.setup(log_level)
    settings = _service_settings("bridge")
    _require_device_profiles()
    if tls:
        settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"tls": True})})
    config = BridgeConfig(client_id=client_id, group=group, filters=tuple(filters or SOURCE_FILTERS), shared=shared,
                          window=window, batch_max=batch,
                          session_expiry=session_expiry, adopt_after=adopt_after, metrics_port=metrics_port or None)
    runner = Bridge(settings, config)
    _run_until_signalled(runner)


@app.command()
def process(
    domains: str = typer.Option("all", help="comma-separated domains, or 'all'"),
    group: str = typer.Option("processors", help="Kafka consumer group: instances in one group share the partitions"),
    stale_after: float = typer.Option(120.0, min=1, help="seconds of silence (at least) before a sensor is stale"),
    instance_id: Optional[str] = typer.Option(None, help="static group membership: a restart with the same id takes its partitions back without a rebalance"),
    session_timeout: float = typer.Option(10.0, min=6, max=300, help="seconds after which a dead member's partitions go to the others"),
    metrics_port: Optional[int] = typer.Option(0, help="Prometheus metrics port, e.g. 9311 (0: off)"),
    compute_every: float = typer.Option(1.0, min=0.1, max=300, help="seconds between window computations and commits "
                                        "(raw readings are written at once); stretched when computing takes more than "
                                        "a fifth of the time, so a full day's windows never slow the raw path"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING"),
) -> None:
    """Compute the plan's indicators from Kafka into InfluxDB and send rule observations to alerts.events.

    Raw readings go to the `telemetry` bucket, hourly/daily windows and indicators to `compliance`.
    Offsets are committed only after InfluxDB accepted the writes and Kafka every observation and
    dead letter; outages of Kafka or InfluxDB are waited out. Run several instances with the same
    --group to share the load. SIGTERM stops cleanly.
    """
    from infra import logs
    from processors.registry import processors
    from processors.service import ProcessorService

    logs.setup(log_level)
    names = list(processors()) if domains == "all" else [d.strip() for d in domains.split(",") if d.strip()]
    try:
        service = ProcessorService(_service_settings("processor"), names, group=group, stale_after=stale_after, instance_id=instance_id,
                                   session_timeout_ms=int(session_timeout * 1000), metrics_port=metrics_port or None,
                                   compute_every=compute_every)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    _run_until_signalled(service)


def _duration(text: str) -> float:
    """'30s', '5m', '2h', '1d' or plain seconds -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise typer.BadParameter(f"{text!r} is not a duration like 30s, 5m, 2h, 1d") from None


@app.command()
def simulate(
    domains: str = typer.Option("all", help="comma-separated domains, or 'all' (air,seawater,parking,fire,garbage)"),
    sensors: int = typer.Option(20, min=1, help="sensors per domain, spread over the registry's sites"),
    rate: float = typer.Option(1.0, min=0, help="readings per wall-clock second per sensor (0: as fast as possible)"),
    total_rate: Optional[float] = typer.Option(None, min=0, help="total readings per second instead of --rate"),
    duration: Optional[str] = typer.Option(None, help="how long to publish, e.g. 30s, 5m (with --rate)"),
    count: Optional[int] = typer.Option(None, min=1, help="readings per sensor instead of --duration"),
    seed: int = typer.Option(1, help="random seed: the same seed and start give byte-identical payloads"),
    speedup: Optional[float] = typer.Option(None, min=0, help="simulated time runs K times faster than wall time"),
    interval: Optional[float] = typer.Option(None, min=0.001, help="simulated seconds between a sensor's readings (default 60, or speedup/rate)"),
    start: Optional[str] = typer.Option(None, help="simulated start time, RFC 3339 (default: the UTC midnight before now minus the simulated span)"),
    fmt: Format = typer.Option(Format.native, "--format", help="payload format"),
    batch: int = typer.Option(1, min=1, help="readings per MQTT message (native, senml)"),
    faults: str = typer.Option("", help="fault=rate,... among drift, stuck, dropout, spike, duplicate, late, skew, malformed"),
    manifest: Optional[Path] = typer.Option(None, help="folder for the ground truth: manifest.json and truth.jsonl"),
    scenario: Optional[str] = typer.Option(None, help="plan-threshold episodes with their expected alerts "
                                           "(simulators/scenarios.py: demo-day, calm); default length: its days"),
    dry_run: bool = typer.Option(False, "--dry-run", help="generate and encode, publish nothing"),
    tls: bool = typer.Option(False, "--tls", help="publish over the TLS listener"),
) -> None:
    """Publish realistic Laoshan sensor readings over MQTT, with optional faults.

    Examples:

      smartcity simulate --domains all --sensors 20 --duration 30s --seed 1

      smartcity simulate --domains air --sensors 5 --count 365 --interval 86400 --rate 10   (a year of daily data in 37 s)

      smartcity simulate --domains parking --rate 0 --count 1000 --batch 50   (saturate the bridge)

      smartcity simulate --scenario demo-day --interval 600 --rate 0 --manifest out   (episodes; out/manifest.json lists the alerts they must raise)
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from infra.settings import get_settings
    from schemas.timeparse import parse_ts
    from simulators.engine import MODELS, NullSink, SimOptions, Simulation, ticks_for, write_manifest
    from simulators.faults import parse_faults
    from simulators.publisher import Publisher
    from simulators.scenarios import scenario as get_scenario

    console = Console(stderr=True)
    names = list(MODELS) if domains == "all" else [d.strip() for d in domains.split(",") if d.strip()]
    try:
        fault_rates = parse_faults(faults)
        if total_rate is not None:
            rate = total_rate / (sensors * len(names))
        if scenario is not None and duration is None and count is None:
            count = int(get_scenario(scenario).days * 86400 // (interval or 60.0))
        ticks = ticks_for(_duration(duration) if duration else None, count, rate)
        if speedup is not None and interval is not None:
            raise ValueError("give --speedup or --interval, not both")
        if speedup is not None:
            if rate <= 0:
                raise ValueError("--speedup needs a --rate above 0 (simulated interval = speedup / rate)")
            interval = speedup / rate
        options = SimOptions(domains=names, sensors=sensors, ticks=ticks, interval=interval or 60.0, rate=rate,
                             seed=seed, fmt=fmt.value, batch=batch, faults=fault_rates,
                             start_ns=parse_ts(start) if start else None, scenario=scenario)
        if manifest:
            manifest.mkdir(parents=True, exist_ok=True)
        sim = Simulation(options, truth=manifest / "truth.jsonl" if manifest else None)
    except (ValueError, KeyError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2)
    settings = get_settings()
    if tls:
        settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"tls": True})})
    sink = NullSink() if dry_run else Publisher(settings)
    columns = [TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("ticks"),
               TextColumn("{task.fields[msgs]} msgs  {task.fields[rate]} msg/s  {task.fields[errors]} refused"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("sim", total=ticks, msgs=0, rate="0", errors=0)

        def update(done: int, stats) -> None:  # noqa: ANN001
            elapsed = time.monotonic() - stats.started
            progress.update(task, completed=done, msgs=stats.messages,
                            rate=f"{stats.messages / elapsed:,.0f}" if elapsed else "0",
                            errors=getattr(sink, "refused", 0))

        import time

        try:
            stats = sim.run(sink, update)
            if isinstance(sink, Publisher):
                sink.wait()
                stats.elapsed = time.monotonic() - stats.started
        except ConnectionError as exc:
            console.print(f"[red]error:[/red] {exc}. Is the stack up? (make stack; smartcity stack status)")
            raise typer.Exit(1)
        finally:
            if isinstance(sink, Publisher):
                sink.close()
    summary = stats.summary()
    refused = getattr(sink, "refused", 0)
    if manifest:
        write_manifest(manifest / "manifest.json", options, sim.start, stats,
                       {"refused": refused, "expected_alerts": sim.expected()})
    table = Table(title=f"simulation summary (seed {seed}, {fmt.value}, start {start or 'default'})")
    for col in ("domain", "readings"):
        table.add_column(col)
    for name, n in summary["by_domain"].items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(f"messages {summary['messages']:,} ({summary['bytes']:,} bytes) in {summary['elapsed_s']} s: "
                  f"[bold]{summary['messages_per_s']:,} msg/s, {summary['readings_per_s']:,} readings/s[/bold] achieved"
                  f"{'' if dry_run else ' (acknowledged by the broker)'}; refused {refused}")
    injected = {k: v for k, v in summary["faults"].items() if v}
    console.print(f"faults injected: {injected or 'none'}")
    console.print(f"payload sha256: {summary['payload_sha256']}")
    if refused:
        raise typer.Exit(1)


@app.command()
def demo(
    sensors: int = typer.Option(10, min=4, help="sensors per domain (4 or more: every episode site has one)"),
    interval: int = typer.Option(600, min=60, help="simulated seconds between a sensor's readings"),
    scenario: str = typer.Option("demo-day", help="the episodes to play (simulators/scenarios.py): demo-day, calm"),
    rules: Optional[Path] = typer.Option(None, help="alert config whose rule policies the router runs "
                                         "(default deploy/config/alerts.toml)"),
) -> None:
    """Run simulated days of Laoshan through the real pipeline and prove the alert loop.

    Needs the stack (make demo starts it). Starts a bridge, a processor and the alert router, publishes
    the scenario's days for every domain (with a few malformed and out-of-range messages) while a duty
    officer acknowledges each breach as it fires, waits until InfluxDB holds every valid reading, prints
    counts per stage, the plan indicators against their targets, and the per-domain breach table of
    the manifest check (exit 1 when an expected breach did not fire, reach every channel, get
    acknowledged and resolve, or an alert fired that no episode explains).
    """
    from infra.settings import get_settings
    from smartcity.demo import run_demo
    from smartcity.demoloop import DEPLOYED_RULES

    raise typer.Exit(run_demo(get_settings(), sensors=sensors, interval=interval, scenario=scenario,
                              rules=rules or DEPLOYED_RULES))


@alerts_app.command("serve")
def alerts_serve(
    config: Optional[Path] = typer.Option(None, help="rule policies and subscribers (TOML); default "
                                          "$SMARTCITY_ALERTS_CONFIG or ./deploy/config/alerts.toml"),
    check_config: bool = typer.Option(False, "--check-config", help="validate the config, say what to fix, exit"),
    group: str = typer.Option("alert-router", help="Kafka consumer group: routers in one group share the alerts"),
    instance: str = typer.Option("1", help="this router's name in the group; keep it stable (it names the "
                                 "MQTT session that holds field acks while the router is down)"),
    http_port: int = typer.Option(9311, help="port of the acknowledge links (/ack) and Prometheus (/metrics); 0: off"),
    http_host: str = typer.Option("127.0.0.1", help="address the HTTP port listens on"),
    session_expiry: int = typer.Option(7 * 24 * 3600, min=1, help="seconds the broker keeps field acks for a "
                                       "router that is down"),
    log_level: str = typer.Option("INFO"),
) -> None:
    """Turn rule observations into alerts and notify subscribers (MQTT, webhook, e-mail).

    State (alerts, acknowledgements, silences, undelivered notifications) lives in the compacted Kafka
    topic alerts.state and survives restarts; several routers with the same --group share the alerts
    by partition (give each its own --instance and --http-port). A subscriber that cannot be served
    is reported and skipped; Kafka, InfluxDB or Mosquitto outages are waited out. SIGTERM stops cleanly.
    """
    from alerts.router import AlertConfig, AlertRouter, default_config_path
    from infra import logs

    logs.setup(log_level)
    path = config or default_config_path()
    try:
        cfg = AlertConfig.load(path)
    except ValueError as exc:
        hint = "" if path.is_file() else (" (run from the repository root, pass --config FILE or set "
                                          "SMARTCITY_ALERTS_CONFIG)")
        typer.echo(f"error: {exc}{hint}", err=True)
        raise typer.Exit(2)
    if check_config:
        problems = cfg.problems()
        for problem in problems:
            typer.echo(f"problem: {problem}")
        served = [s.name for s in cfg.subscriber if not s.problems()]
        typer.echo(f"{path}: {len(cfg.subscriber)} subscribers, {len(served)} can be served "
                   f"({', '.join(served) or 'none'}); {len(cfg.rules)} rule policies; "
                   f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
        raise typer.Exit(1 if problems else 0)
    router = AlertRouter(_service_settings("router"), cfg, group=group, instance=instance, http_host=http_host,
                         http_port=http_port, session_expiry=session_expiry)
    _run_until_signalled(router)


def _producer():  # noqa: ANN202
    from infra.clients import kafka_producer
    from infra.settings import get_settings

    return get_settings(), kafka_producer(get_settings())


@alerts_app.command("ack")
def alerts_ack(
    alert_id: str = typer.Argument(..., help="the alert id shown in notifications and `alerts list`"),
    by: str = typer.Option(..., "--by", help="who acknowledges"),
    comment: str = typer.Option("", "--comment", help="what is being done, or how it was resolved"),
) -> None:
    """Acknowledge an alert (no more reminders) or add a resolution note to a resolved one.

    The acknowledgement goes to the router that owns the alert, in order with its observations; a
    router that is down applies it when it is back.
    """
    from alerts.router import send_ack
    from alerts.state import id_partition

    try:
        id_partition(alert_id, 1)   # the id's format, before connecting to anything
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    settings, producer = _producer()
    try:
        send_ack(producer, settings, alert_id, by, comment, "cli")
    finally:
        producer.close()
    typer.echo(f"acknowledgement of {alert_id} by {by} sent")


@alerts_app.command("silence")
def alerts_silence(
    match: list[str] = typer.Option(..., "--match", help="label=glob, e.g. site=shazikou or rule=air.*; repeatable"),
    duration: str = typer.Option("2h", help="how long, e.g. 30m, 2h"),
    by: str = typer.Option(..., "--by"),
    comment: str = typer.Option("", "--comment"),
) -> None:
    """Mute notifications of matching alerts for a while (their state is still tracked)."""
    import time as _time
    import uuid as _uuid

    from alerts.router import send_silence
    from alerts.state import Silence

    matchers = {}
    for m in match:
        label, sep, pattern = m.partition("=")
        if not sep or label not in ("rule", "entity", "domain", "site", "severity"):
            typer.echo(f"error: --match {m!r}: use rule|entity|domain|site|severity=glob", err=True)
            raise typer.Exit(2)
        matchers[label] = pattern
    now = _time.time()
    silence = Silence(_uuid.uuid4().hex[:8], matchers, now, now + _duration(duration), by, comment)
    settings, producer = _producer()
    try:
        send_silence(producer, settings, silence)
    finally:
        producer.close()
    typer.echo(f"silence {silence.id} sent: {matchers} for {duration}")


@alerts_app.command("list")
def alerts_list(
    state: Optional[str] = typer.Option(None, help="pending, firing, resolved or cleared"),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table"),
) -> None:
    """Alerts as the routers last saved them (from the compacted alerts.state topic)."""
    from rich.console import Console
    from rich.table import Table

    from alerts.router import alerts_in, read_state
    from infra.settings import get_settings

    alerts = [a for a in alerts_in(read_state(get_settings())) if state is None or a["state"] == state]
    if as_json:
        for a in alerts:
            typer.echo(json.dumps(a, ensure_ascii=False))
        return
    table = Table(title=f"alerts{f' ({state})' if state else ''}")
    for col in ("id", "state", "severity", "rule", "entity", "value", "threshold", "acked by"):
        table.add_column(col)
    for a in sorted(alerts, key=lambda a: (a["state"], a["rule"], a["entity"])):
        table.add_row(a["id"], a["state"], a["severity"], a["rule"], a["entity"], f"{a['value']:g}",
                      f"{a['threshold']:g}", a.get("acked_by") or "")
    Console().print(table)


@app.command()
def docs(check: bool = typer.Option(False, "--check", help="only report (exit 1) whether docs/domains is stale")) -> None:
    """Write docs/domains/<domain>.md from each domain's plug-ins: schema, what it writes, indicators,
    alert rules and the plan entries it is judged by (commit the result)."""
    from smartcity.domaindocs import write

    stale = write(check)
    if check and stale:
        typer.echo(f"stale: {', '.join(p.name for p in stale)}; run smartcity docs", err=True)
        raise typer.Exit(1)


@dashboards_app.command("generate")
def dashboards_generate(check: bool = typer.Option(False, "--check", help="only report whether the JSON is stale")) -> None:
    """Write dashboards/json/*.json from the Python definitions (commit the result)."""
    from dashboards.generate import main

    raise typer.Exit(main(["--check"] if check else []))


@dashboards_app.command("push")
def dashboards_push() -> None:
    """Create/update the InfluxDB datasource, the Laoshan folder and every dashboard in Grafana.

    URL and token from settings: SMARTCITY_GRAFANA__URL (default http://127.0.0.1:3000) and
    SMARTCITY_GRAFANA__TOKEN (a service-account token); SMARTCITY_GRAFANA__INFLUX_URL is InfluxDB as
    Grafana sees it (e.g. http://influxdb:8086 in the compose stack).
    """
    from dashboards.push import push
    from infra.settings import get_settings

    try:
        for url in push(get_settings()):
            typer.echo(url)
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)


@app.command()
def wall(png: Path = typer.Option(Path("wall.png"), "--png", help="where to write the picture")) -> None:
    """Render the city wall (every plan target of the plan file against its latest figure, and whether
    the year can still make it) from InfluxDB to a PNG."""
    from dashboards.preview import STATE_TEXT, render
    from infra.settings import get_settings

    standings, firing, chinese = render(png, get_settings())
    for s in standings:
        outlook = s.outlook_text()[0]
        typer.echo(f"{s.target.domain:9} {s.target.title_en:42} {s.shown:>10}  "
                   f"{s.target_text()[0]:18} {STATE_TEXT[s.state][0]}" + (f"  | {outlook}" if outlook else ""))
    typer.echo(f"firing alerts: {firing}")
    if not chinese:
        typer.echo("note: no CJK font found, labels are English only (apt-get install fonts-wqy-zenhei)", err=True)
    typer.echo(f"wrote {png}")


@stack_app.command("status")
def stack_status() -> None:
    """Show each service (up/down, address, version, data folder), then each consumer group's lag and
    each stage's rate over the last five minutes (exit 1 when any service is down)."""
    from infra.flow import flow_table
    from infra.stack import stack_status as status

    up, table = status()
    typer.echo(table, nl=False)
    if up:
        typer.echo(flow_table(_service_settings("processor")), nl=False)
    raise typer.Exit(0 if up else 1)


@stack_app.command("up")
def stack_up() -> None:
    """Install (cached) and start every service; idempotent."""
    from infra.stack import ensure_stack_up

    typer.echo(ensure_stack_up(), nl=False)


if __name__ == "__main__":
    app()
