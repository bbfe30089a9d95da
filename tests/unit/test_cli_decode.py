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


HOSTILE = [  # one of each class of number a device can get wrong, in each format
    ("native", "city/air/st/pm-9/up", b'{"ts": 1000000000000000.0, "values": {"pm25": 30}}'),
    ("native", "city/air/st/pm-9/up", b'{"ts": "9999-12-31T23:59:59Z", "values": {"pm25": 30}}'),
    ("native", "city/air/st/pm-9/up", b'{"ts": 1790000000, "values": {"pm25": 1e309}}'),
    ("native", "city/air/st/pm-9/up", b'{"ts": 1790000000, "values": {"pm25": ' + b"7" * 80 + b"}}"),
    ("native", "city/air/st/pm-9/up", b'{"ts": 1790000000, "seq": -1180591620717411303424, "values": {"pm25": 30}}'),
    ("native", "city/air/st/pm-9/up", b'{"ts": 1790000000, "values": {"pm25": ' + b"7" * 5000 + b"}}"),
    ("senml", "city/air/st/pm-9/senml", b'[{"bn": "pm-9/", "bt": 9900000000000.0, "n": "pm25", "u": "ug/m3", "v": 30}]'),
    ("ttn", "v3/a@ttn/devices/d1/up", b'{"end_device_ids": {"device_id": "d1", "application_ids": {"application_id": "a"}}, '
                                      b'"received_at": "2026-01-01T00:00:00Z", "uplink_message": {"f_cnt": 1180591620717411303424, '
                                      b'"decoded_payload": {"pm25": 30}}}'),
    ("chirpstack", "application/a/device/0101/event/up", b'{"deviceInfo": {"devEui": "0101", "tags": {"site": "x"}}, '
                                                         b'"time": "50000-01-01T00:00:00Z", "object": {"pm25": 30}}'),
]


@pytest.mark.parametrize("fmt, topic, payload", HOSTILE)
def test_hostile_numbers_exit_2_with_a_reason_never_a_traceback(tmp_path: Path, fmt: str, topic: str, payload: bytes) -> None:
    bad = tmp_path / "hostile.json"
    bad.write_bytes(payload)
    result = runner.invoke(app, ["decode", "-f", fmt, "--domain", "air", "--topic", topic, str(bad)])
    assert result.exit_code == 2 and result.stderr.startswith("rejected: ") and result.exception.__class__ is SystemExit
    assert "Traceback" not in result.output and len(result.stderr) < 1000


def test_decode_refuses_an_invalid_device_profile_file(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "devices.toml"
    bad.write_text('[profiles.x]\ndomain = "air"\nfields = { a = "nope" }\n')
    monkeypatch.setenv("SMARTCITY_DEVICES", str(bad))
    result = runner.invoke(app, ["decode", "-f", "ttn", str(PAYLOADS / "ttn_uplink.json")])
    assert result.exit_code == 2 and f"{bad}, line 3" in result.stderr
