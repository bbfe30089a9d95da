"""The public spec examples, verbatim (tests/fixtures/specs, sources in its README), decoded as a user
would: RFC 8428 §5.1 SenML packs on a city topic, The Things Stack v3 and ChirpStack v4 documentation
payloads with operator device profiles. What the project's domains cannot take is rejected with a
reason, never a crash."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.adapters import TopicInfo, parse, route
from schemas.batch import validate
from schemas.timeparse import TimeWindow

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
NOW = 1_790_000_000 * 10**9  # 2026-09-21, after every example's timestamps
WINDOW = TimeWindow(now_ns=NOW)
AIR = "city/air/st-1/gw-1/senml"


def spec(name: str) -> bytes:
    return (SPECS / name).read_bytes()


def decode(fmt: str, payload: bytes, topic: str | None = None):
    info = route(topic) if topic else TopicInfo(fmt)  # type: ignore[arg-type]
    return validate(parse(fmt, payload, info, window=WINDOW), fmt, now_ns=NOW)  # type: ignore[arg-type]


# -- RFC 8428 §12.1 units ----------------------------------------------------------------------------

@pytest.mark.parametrize("unit, value, expected", [("%RH", 40, 40.0), ("%", 0.4, 40.0), ("/", 0.4, 40.0)])
def test_percent_is_a_ratio_and_percent_rh_a_percentage(unit: str, value: float, expected: float) -> None:
    """RFC 8428 §12.1 Note 2: '%' "is NOT a percentage but the absolute ratio", like '/'."""
    pack = json.dumps([{"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1.320067464e+09,
                        "n": "humidity", "u": unit, "v": value}]).encode()
    result = decode("senml", pack, AIR)
    assert result.errors == [] and result.batch.readings()[0].values == {"humidity": pytest.approx(expected)}
