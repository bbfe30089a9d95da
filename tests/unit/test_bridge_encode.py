"""The bridge's encode step: one message is the unit of failure, whatever breaks while handling it."""
from __future__ import annotations

import json
import logging
import time

import pytest

from infra.settings import Settings
from ingest import bridge as bridge_module
from ingest.bridge import Bridge, BridgeConfig
from schemas import adapters
from schemas.batch import ReadingBatch, record_readings

TS = int(time.time()) - 3600


class Msg:
    """What encode() reads of a paho MQTTMessage."""

    def __init__(self, topic: str | bytes, payload: bytes) -> None:
        self._topic = topic.encode() if isinstance(topic, str) else topic
        self.payload, self.mid, self.qos = payload, 1, 1

    @property
    def topic(self) -> str:
        return self._topic.decode("utf-8")


def good(sensor: str, value: float = 30) -> Msg:
    return Msg(f"city/air/st-1/{sensor}/up", json.dumps({"ts": TS, "values": {"pm25": value}}).encode())


def encode(batch: list[Msg]) -> tuple[list[dict], dict[str, dict]]:
    """(readings produced, dead letters by MQTT topic) of one encode() call."""
    bridge = Bridge(Settings(), BridgeConfig(client_id="unit"), producer=object())  # type: ignore[arg-type]
    records = bridge.encode(batch)  # type: ignore[arg-type]
    readings = [r for t, _, v, _, _ in records if t.startswith("telemetry.") and t != "telemetry.deadletter"
                for r in record_readings(v)]
    dead = {json.loads(v)["topic"]: json.loads(v) for t, _, v, _, _ in records if t == "telemetry.deadletter"}
    return readings, dead


HOSTILE = {
    "city/air/st-1/ms/up": (b'{"ts": %d, "values": {"pm25": 1}}' % (TS * 1000), "looks like epoch milliseconds"),
    "city/air/st-1/far/up": (b'{"ts": "9999-12-31T23:59:59Z", "values": {"pm25": 1}}', "in the future"),
    "city/air/st-1/inf/up": (b'{"ts": %d, "values": {"pm25": 1e309}}' % TS, "overflowed to infinity"),
    "city/air/st-1/big/up": (b'{"ts": %d, "values": {"pm25": %s}}' % (TS, b"7" * 80), "outside the 64-bit"),
    "city/air/st-1/seq/up": (b'{"ts": %d, "seq": %d, "values": {"pm25": 1}}' % (TS, 2**70), "seq must be"),
    "city/air/st-1/digits/up": (b'{"ts": %d, "values": {"pm25": %s}}' % (TS, b"7" * 5000), "thousands of digits"),
}


def test_hostile_messages_are_dead_lettered_each_with_its_reason_and_the_good_ones_pass() -> None:
    batch = [good("a"), *(Msg(t, p) for t, (p, _) in HOSTILE.items()), good("b")]
    readings, dead = encode(batch)
    assert sorted(r["sensor_id"] for r in readings) == ["a", "b"]
    assert set(dead) == set(HOSTILE)
    for topic, (_, reason) in HOSTILE.items():
        assert reason in dead[topic]["reason"], dead[topic]["reason"]


def test_a_parser_bug_dead_letters_only_its_message_as_an_internal_error(monkeypatch, caplog) -> None:
    def broken(payload: bytes, *args: object, **kwargs: object) -> list:
        return 1 // 0 if b"boom" in payload else adapters.parse_native(payload, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setitem(adapters.PARSERS, "native", broken)
    with caplog.at_level(logging.ERROR, logger="smartcity.bridge"):
        readings, dead = encode([good("a"), Msg("city/air/st-1/x/up", b'{"boom": 1}'), good("b")])
    assert [r["sensor_id"] for r in readings] == ["a", "b"]
    assert dead["city/air/st-1/x/up"]["reason"] == "internal error: ZeroDivisionError: integer division or modulo by zero"
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_when_vectorised_validation_raises_messages_are_validated_one_by_one(monkeypatch, caplog) -> None:
    real = bridge_module.validate_many

    def fragile(messages: list, **kwargs: object):
        if any(raw.sensor_id == "boom" for m in messages for raw in m.raws):
            raise RuntimeError("kernel bug")
        return real(messages, **kwargs)

    monkeypatch.setattr(bridge_module, "validate_many", fragile)
    bad_value = Msg("city/air/st-1/neg/up", json.dumps({"ts": TS, "values": {"pm25": -3}}).encode())
    with caplog.at_level(logging.ERROR, logger="smartcity.bridge"):
        readings, dead = encode([good("a"), good("boom"), bad_value, good("b", 40)])
    assert sorted((r["sensor_id"], r["values"]["pm25"]) for r in readings) == [("a", 30.0), ("b", 40.0)]
    assert dead["city/air/st-1/boom/up"]["reason"] == "internal error: RuntimeError: kernel bug"
    assert "greater than or equal to 0" in dead["city/air/st-1/neg/up"]["reason"]
    assert any("validate_batch_failed" in r.getMessage() for r in caplog.records)


def test_a_row_that_cannot_be_encoded_dead_letters_its_message_only(monkeypatch) -> None:
    real = ReadingBatch.records

    def fragile(self: ReadingBatch, message_of=None):  # noqa: ANN001
        if "boom" in self.sensor_id.tolist():
            raise ValueError("cannot encode")
        return real(self, message_of)

    monkeypatch.setattr(ReadingBatch, "records", fragile)
    readings, dead = encode([good("a"), good("boom"), good("b")])
    assert sorted(r["sensor_id"] for r in readings) == ["a", "b"]
    assert dead["city/air/st-1/boom/up"]["reason"] == "internal error: ValueError: cannot encode"


def test_a_10_mb_payload_gives_a_small_dead_letter() -> None:
    payload = b'{"ts": 1, "values": {"pm25": "' + b"x" * (10 * 1024 * 1024) + b'"}}'
    bridge = Bridge(Settings(), BridgeConfig(client_id="unit"), producer=object())  # type: ignore[arg-type]
    ((topic, key, value, headers, _),) = bridge.encode([Msg("city/air/st-1/huge/up", payload)])  # type: ignore[list-item]
    record = json.loads(value)
    assert topic == "telemetry.deadletter" and len(value) < 100_000
    assert record["raw_size"] == len(payload) and record["raw_truncated"] and len(record["raw_sha256"]) == 64


def test_a_topic_that_is_not_utf8_is_dead_lettered_not_fatal() -> None:
    readings, dead = encode([Msg(b"city/air/st-1/\xff/up", b"{}"), good("a")])
    assert [r["sensor_id"] for r in readings] == ["a"] and len(dead) == 1
    assert next(iter(dead.values()))["reason"].startswith("internal error: UnicodeDecodeError")


@pytest.mark.parametrize("future_skew_s, accepted", [(300, False), (7200, True)])
def test_the_time_window_comes_from_the_ingest_settings(future_skew_s: float, accepted: bool) -> None:
    settings = Settings(ingest={"future_skew_s": future_skew_s})
    bridge = Bridge(settings, BridgeConfig(client_id="unit"), producer=object())  # type: ignore[arg-type]
    msg = Msg("city/air/st-1/s/up", json.dumps({"ts": int(time.time()) + 3600, "values": {"pm25": 1}}).encode())
    ((topic, *_),) = bridge.encode([msg])  # type: ignore[list-item]
    assert (topic == "telemetry.air") is accepted
