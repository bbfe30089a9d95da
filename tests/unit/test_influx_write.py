"""The InfluxDB write path: which credential each setting picks (v1 write-only user, service token,
operator token), the HTTP request built from it, and how the processor classifies InfluxDB's answers
(the bodies and statuses below are the ones measured on influxd 2.7.12, see processors/influx.py)."""
from __future__ import annotations

import base64
import gzip
import logging
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from urllib3.exceptions import NewConnectionError

from infra import settings as settings_module
from infra.influxwrite import InfluxWriteError, write_request
from infra.settings import InfluxSettings, get_settings
from processors.influx import REFUSED, TOO_LARGE, describe, error_class, retry_after, status_of
from smartcity.cli import _service_settings


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stack folder with the operator token and the bridge's and the processor's credentials."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, value in {"influx-token": "op-secret", "influx-v1-bridge": "bridge-pw",
                        "influx-v1-processor": "processor-pw", "influx-token-processor": "processor-read"}.items():
        (secrets / name).write_text(value + "\n")
    monkeypatch.setenv("SMARTCITY_STACK_DIR", str(tmp_path))
    settings_module._warn_missing_secret.cache_clear()
    return tmp_path


def test_a_service_writes_with_its_v1_user_and_reads_with_its_own_token(stack: Path) -> None:
    cfg = InfluxSettings(service="processor")
    user, password = cfg.v1_credential()  # type: ignore[misc]
    assert (user, password.get_secret_value()) == ("smartcity-processor", "processor-pw")
    assert cfg.token_value() == "processor-read"


def test_without_a_service_everything_uses_the_operator_token(stack: Path) -> None:
    for cfg in (InfluxSettings(), InfluxSettings(service="")):
        assert cfg.v1_credential() is None
        assert cfg.token_value() == "op-secret"


def test_a_configured_token_wins_over_the_stack_secrets(stack: Path) -> None:
    cfg = InfluxSettings(service="bridge", token="given")
    assert cfg.v1_credential() is None and cfg.token_value() == "given"
    explicit = InfluxSettings(token="given", v1_username="u", v1_password="p")
    assert explicit.v1_credential()[0] == "u"  # type: ignore[index]


def test_a_missing_service_secret_falls_back_with_one_warning(stack: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "smartcity.settings")
    cfg = InfluxSettings(service="router")            # an older stack: no influx-v1-router, no token
    assert cfg.v1_credential() is None
    assert cfg.token_value() == "op-secret"
    cfg.v1_credential()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings               # once per missing secret, not per write
    assert all("influx_service_secret_missing" in w and "make stack" in w for w in warnings)
    assert not any("op-secret" in w or "-pw" in w for w in warnings)


@pytest.mark.parametrize("env, expected", [(None, "bridge"), ("", ""), ("router", "router")])
def test_a_service_command_uses_its_credentials_unless_the_environment_says_otherwise(
        stack: Path, monkeypatch: pytest.MonkeyPatch, env: str | None, expected: str) -> None:
    monkeypatch.setenv("SMARTCITY_INFLUX__SERVICE", env or "")   # restored (or removed) after the test
    if env is None:
        monkeypatch.delenv("SMARTCITY_INFLUX__SERVICE")
    get_settings.cache_clear()
    try:
        assert _service_settings("bridge").influx.service == expected
    finally:
        get_settings.cache_clear()


def test_no_operator_token_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMARTCITY_STACK_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="SMARTCITY_INFLUX__TOKEN.*make stack"):
        InfluxSettings().token_value()


def test_the_v1_request_is_gzipped_line_protocol_with_basic_auth(stack: Path) -> None:
    lines = ["m,k=a v=1i 1", "m,k=b v=2i 2"]
    req = write_request(InfluxSettings(url="http://influx:8086/", service="bridge"), "compliance", lines)
    url = urlsplit(req.url)
    assert (url.netloc, url.path, parse_qs(url.query)) == ("influx:8086", "/write", {"db": ["compliance"], "precision": ["ns"]})
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"smartcity-bridge:bridge-pw").decode()
    assert req.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(req.body).decode().split("\n") == lines


def test_without_a_v1_credential_the_request_is_a_v2_write_with_the_token(stack: Path) -> None:
    req = write_request(InfluxSettings(org="laoshan"), "bucket with space", ["m v=1i 1"])
    url = urlsplit(req.url)
    assert url.path == "/api/v2/write"
    assert parse_qs(url.query) == {"org": ["laoshan"], "bucket": ["bucket with space"], "precision": ["ns"]}
    assert req.headers["Authorization"] == "Token op-secret"
    assert gzip.decompress(req.body) == b"m v=1i 1"


def answer(status: int, body: str, **headers: str) -> InfluxWriteError:
    """An answer of InfluxDB as the writer raises it."""
    return InfluxWriteError(status, body, urllib3.HTTPHeaderDict({"Content-Type": "application/json", **headers}))


MEASURED = {  # status, body of influxd 2.7.12 to the v1 /write (the v2 /api/v2/write answers the same)
    "unparsable line": (400, '{"code":"invalid","message":"unable to parse \'m v= 1\': missing field value"}'),
    "type conflict": (422, '{"code":"unprocessable entity","message":"failure writing points to database: '
                           'partial write: field type conflict: input field \\"v\\" on measurement \\"m\\" is type '
                           'float, already exists as type integer dropped=1"}'),
    "wrong password": (401, '{"code":"unauthorized","message":"Unauthorized"}'),
    "bucket not writable": (404, '{"code":"not found","message":"no dbrp mapping found"}'),
    "throttled": (429, ""),
    "server": (503, '{"code":"internal error","message":"unavailable"}'),
}


@pytest.mark.parametrize("case, kind", [("unparsable line", "influx_rejected"), ("type conflict", "influx_rejected"),
                                        ("wrong password", "influx_client"), ("bucket not writable", "influx_client"),
                                        ("throttled", "influx_throttled"), ("server", "influx_server")])
def test_the_measured_v1_answers_are_classified_like_the_v2_client_errors(case: str, kind: str) -> None:
    status, body = MEASURED[case]
    exc = answer(status, body)
    assert error_class(exc) == kind
    assert (status_of(exc) in REFUSED) == (kind == "influx_rejected")   # refused lines are bisected, the rest waited out
    assert body[:100] in describe(exc, 1000)


def test_too_large_is_split_and_retry_after_is_honoured() -> None:
    assert status_of(answer(413, "request too large")) == TOO_LARGE
    assert retry_after(answer(429, "", **{"Retry-After": "7"})) == 7.0
    assert retry_after(answer(503, "")) is None


def test_a_connection_failure_is_unreachable_not_an_answer() -> None:
    exc = NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert status_of(exc) is None and error_class(exc) == "influx_unreachable"
