"""The alert loop's boundary: every alerts.events record and field ack is validated or rejected with a reason."""
from __future__ import annotations

import json

import pytest

from schemas.alerting import AckCommand, EventRejected, Observation, SilenceCommand, parse_event, parse_field_ack

GOOD = {"rule": "air.pm25_daily", "entity": "st1", "domain": "air", "site": "st1", "severity": "major",
        "value": 92.0, "threshold": 75, "breach": True, "ts": 1_700_000_000 * 10**9}


def test_an_observation_of_the_processors_parses_with_its_key() -> None:
    obs = parse_event(json.dumps(GOOD).encode())
    assert isinstance(obs, Observation) and obs.key == "air.pm25_daily/st1" and obs.threshold == 75.0


def test_commands_parse_by_their_type() -> None:
    ack = parse_event(b'{"type": "ack", "id": "1a2b3c4d5e6f-3", "by": "li", "at": 1700000000}')
    silence = parse_event(b'{"type": "silence", "id": "ab12", "matchers": {"site": "st*"}, "start": 1, "end": 2}')
    assert isinstance(ack, AckCommand) and isinstance(silence, SilenceCommand)


@pytest.mark.parametrize(("raw", "says"), [
    (None, "tombstone"), (b"not json", "not JSON"), (b"\xff\xfe", "not JSON"), (b"[1]", "JSON object"),
    (b"[" * 20_000, "more than"), (json.dumps({**GOOD, "severity": "catastrophic"}).encode(), "severity"),
    (json.dumps({**GOOD, "value": "92"}).encode(), "value"), (json.dumps({**GOOD, "value": None}).encode(), "value"),
    (json.dumps({**GOOD, "breach": "yes"}).encode(), "breach"), (json.dumps({**GOOD, "ts": 1.5e18}).encode(), "ts"),
    (json.dumps({**GOOD, "entity": "a\nb"}).encode(), "entity"), (b'{"rule": "x"}', "entity"),
    (json.dumps({**GOOD, "type": "bogus"}).encode(), "type"),
    (b'{"type": "ack", "id": "../x-1", "by": "li", "at": 1}', "id"),
    (b'{"type": "ack", "id": "1a2b3c4d5e6f-3", "by": "li", "at": 1e300}', "at"),
    (b'{"type": "ack", "id": "1a2b3c4d5e6f-3", "by": "", "at": 5}', "by"),
    (b'{"type": "silence", "id": "s", "matchers": {"site": "*"}, "start": 5, "end": 1}', "end after"),
    (b'{"type": "silence", "id": "s", "matchers": {"colour": "*"}, "start": 1, "end": 5}', "matchers"),
    # found by attack27: rule "x/y" entity "z" and rule "x" entity "y/z" were one alert (key "x/y/z"): the
    # second was folded into the first and never notified; a silence of no matchers muted everything
    (json.dumps({**GOOD, "rule": "air.pm25/daily"}).encode(), "rule"),
    (b'{"type": "silence", "id": "s", "matchers": {}, "start": 1, "end": 5, "created_by": "x"}', "matchers"),
])
def test_a_bad_record_is_rejected_with_what_is_wrong(raw: bytes | None, says: str) -> None:
    with pytest.raises(EventRejected, match=says):
        parse_event(raw)


def test_a_nan_in_json_is_not_a_value() -> None:
    with pytest.raises(EventRejected, match="value"):
        parse_event(json.dumps({**GOOD, "value": float("nan")}).encode())


def test_a_field_app_cannot_choose_the_time_of_its_acknowledgement() -> None:
    body = parse_field_ack(b'{"by": "li", "at": 1}')
    assert body.by == "li" and not hasattr(body, "at")
    with pytest.raises(EventRejected):
        parse_field_ack(b'"li"')
