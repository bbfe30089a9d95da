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
