"""`smartcity decode`: what an engineer runs on a new device's payload."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smartcity.cli import app

PAYLOADS = Path(__file__).parents[1] / "fixtures" / "payloads"
runner = CliRunner()


@pytest.mark.parametrize("fmt, fixture, topic, domain", [
    ("native", "native_array.json", "city/air/laoshan-1/pm-07/up", "air"),
    ("senml", "senml_pack.json", "city/seawater/bay/buoy-07/senml", "seawater"),
    ("ttn", "ttn_uplink.json", None, "garbage"),
    ("chirpstack", "chirpstack_up.json", None, "fire"),
])
def test_decode_prints_canonical_readings_for_every_format(fmt: str, fixture: str, topic: str | None, domain: str) -> None:
    args = ["decode", "--format", fmt, str(PAYLOADS / fixture)] + (["--topic", topic] if topic else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and all(r["domain"] == domain and r["source"] == fmt for r in lines)


def test_decode_rejection_exits_2_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"ts": 1777593600, "values": {"pm25": -4}}')
    result = runner.invoke(app, ["decode", "-f", "native", "-t", "city/air/st/s1/up", str(bad)])
    assert result.exit_code == 2 and "greater than or equal to 0" in result.stderr


def test_decode_raw_shows_what_the_format_carried_without_a_domain() -> None:
    result = runner.invoke(app, ["decode", "-f", "senml", "--raw", str(PAYLOADS / "senml_pack.json")])
    first = json.loads(result.stdout.splitlines()[0])
    assert result.exit_code == 0 and first["units"]["water_temperature"] == "Cel" and first["domain"] is None
