"""`smartcity`: the command line of the pipeline (decode, stack, and the services as they land)."""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    help="Laoshan smart-city telemetry pipeline: MQTT -> Kafka -> NumPy processors -> InfluxDB -> Grafana.",
    no_args_is_help=True,
    add_completion=False,
)
stack_app = typer.Typer(help="The local service stack (Mosquitto, Kafka, InfluxDB) started by deploy/native.",
                        no_args_is_help=True)
app.add_typer(stack_app, name="stack")


class Format(str, Enum):
    native = "native"
    senml = "senml"
    ttn = "ttn"
    chirpstack = "chirpstack"


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

    Exit status 2 when the payload (or any reading in it) is rejected; the reason goes to stderr.

    Example: smartcity decode -f ttn uplink.json
    """
    from dataclasses import asdict

    from schemas.adapters import PayloadError, TopicInfo, parse, route
    from schemas.batch import validate
    from schemas.timeparse import format_ts

    payload = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    try:
        info = route(topic) if topic else TopicInfo(fmt.value)
        if topic and info.format not in (fmt.value, "status"):
            raise PayloadError(f"topic {topic!r} carries {info.format} payloads, not {fmt.value}")
        raws = parse(fmt.value, payload, info)
    except PayloadError as exc:
        typer.echo(f"rejected: {exc.reason}", err=True)
        raise typer.Exit(2)
    if raw:
        for r in raws:
            d = asdict(r)
            d["time"] = format_ts(r.ts) if r.ts else None
            typer.echo(json.dumps(d, ensure_ascii=False))
        return
    result = validate(raws, fmt.value, domain=domain)
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
    group: str = typer.Option("ingest", help="shared-subscription group ($share/<group>/...): bridges in one group split the load"),
    window: int = typer.Option(2000, min=1, max=65535, help="unacknowledged messages in flight (MQTT Receive Maximum)"),
    batch: int = typer.Option(1000, min=1, help="messages decoded and produced to Kafka together"),
    session_expiry: int = typer.Option(7 * 24 * 3600, help="seconds the broker keeps our session while we are away"),
    metrics_port: Optional[int] = typer.Option(9310, help="Prometheus metrics port (0: off)"),
    tls: bool = typer.Option(False, "--tls", help="connect to the TLS listener, verifying the stack's CA"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING"),
) -> None:
    """Forward MQTT readings to Kafka: validate, produce, dead-letter, then acknowledge.

    Subscribes (QoS 1, persistent session) to city/+/+/+/up, city/+/+/+/senml, v3/+/devices/+/up and
    application/+/device/+/event/up through a shared subscription, so several bridges split the load.
    A message is acknowledged only after Kafka accepted every record made from it. SIGTERM or Ctrl-C
    stops cleanly: stop subscribing, forward and acknowledge what arrived, flush, exit 0.
    """
    import signal

    from ingest.bridge import Bridge, BridgeConfig
    from smartcity import logs
    from smartcity.settings import get_settings

    logs.setup(log_level)
    settings = get_settings()
    if tls:
        settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"tls": True})})
    config = BridgeConfig(client_id=client_id, group=group, window=window, batch_max=batch,
                          session_expiry=session_expiry, metrics_port=metrics_port or None)
    runner = Bridge(settings, config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stop())
    runner.run()


@stack_app.command("status")
def stack_status() -> None:
    """Show each service: up/down, address, version, data folder (exit 1 when any is down)."""
    from smartcity.stack import stack_status as status

    up, table = status()
    typer.echo(table, nl=False)
    raise typer.Exit(0 if up else 1)


@stack_app.command("up")
def stack_up() -> None:
    """Install (cached) and start every service; idempotent."""
    from smartcity.stack import ensure_stack_up

    typer.echo(ensure_stack_up(), nl=False)


if __name__ == "__main__":
    app()
