"""Payload adapters: every format decodes realistic payloads, and every bad input becomes a typed reason."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from schemas.adapters import PayloadError, TopicInfo, parse, route
from schemas.batch import validate
from schemas.timeparse import TimeWindow

PAYLOADS = Path(__file__).parents[1] / "fixtures" / "payloads"
NOW = 1_790_000_000 * 10**9  # 2026-09-21, after every fixture's timestamps


WINDOW = TimeWindow(now_ns=NOW)


def decode(fmt: str, payload: bytes, topic: str | None = None, domain: str | None = None):
    info = route(topic) if topic else TopicInfo(fmt)  # type: ignore[arg-type]
    return validate(parse(fmt, payload, info, window=WINDOW), fmt, domain=domain, now_ns=NOW)  # type: ignore[arg-type]


def test_native_array_gives_one_reading_per_element_with_identity_from_the_topic() -> None:
    result = decode("native", (PAYLOADS / "native_array.json").read_bytes(), "city/air/laoshan-1/pm-07/up")
    assert result.errors == []
    readings = result.batch.readings()
    assert [(r.sensor_id, r.site, r.domain, r.seq) for r in readings] == [
        ("pm-07", "laoshan-1", "air", 101), ("pm-07", "laoshan-1", "air", 102)]
    assert readings[0].ts == 1_777_593_600 * 10**9  # 08:00+08:00 is 00:00Z
    assert readings[1].values["pm25"] == 44.5 and readings[0].lat == 36.102


def test_native_single_object_is_one_reading() -> None:
    result = decode("native", b'{"ts": 1777593600, "values": {"fill_level": 0.5}}', "city/garbage/c1/bin-1/up")
    assert result.errors == [] and len(result.batch) == 1


def test_senml_resolves_base_name_time_and_unit_and_groups_by_time() -> None:
    result = decode("senml", (PAYLOADS / "senml_pack.json").read_bytes(), "city/seawater/bay/buoy-07/senml")
    assert result.errors == []
    first, second = result.batch.readings()
    assert first.ts == 1_777_593_600 * 10**9 and second.ts == first.ts + 600 * 10**9
    assert first.values == {"ph": 8.1, "dissolved_oxygen": 7.2, "cod": 1.4, "inorganic_nitrogen": 0.18,
                            "phosphate": 0.012, "water_temperature": 17.5}
    assert second.values == {"water_temperature": 17.6}


def test_senml_relative_time_is_relative_to_now() -> None:
    before = time.time_ns()
    raws = parse("senml", b'[{"bn": "s1/", "n": "pm25", "v": 3, "t": -60}]')
    assert before - 61 * 10**9 <= raws[0].ts <= time.time_ns() - 59 * 10**9


def test_senml_units_are_converted_to_the_schema_unit() -> None:
    payload = json.dumps([{"bn": "fw-1/", "bt": 1777593600, "n": "wind_speed", "u": "m/s", "v": 5},
                          {"n": "temperature", "u": "K", "v": 293.15}]).encode()
    result = decode("senml", payload, "city/fire/zone-a/fw-1/senml")
    assert result.batch.readings()[0].values == pytest.approx({"wind_speed": 18.0, "temperature": 20.0})


def test_senml_incompatible_unit_is_rejected_with_the_units_named() -> None:
    payload = b'[{"bn": "s/", "bt": 1777593600, "n": "pm25", "u": "kg", "v": 5}]'
    result = decode("senml", payload, "city/air/st/s/senml")
    assert result.batch is None and "unit 'kg' cannot be converted to 'µg/m³'" in result.errors[0]


def test_ttn_uplink_uses_the_profile_mapping_and_the_network_server_time() -> None:
    result = decode("ttn", (PAYLOADS / "ttn_uplink.json").read_bytes())
    (reading,) = result.batch.readings()
    assert (reading.sensor_id, reading.domain, reading.site, reading.seq) == (
        "bin-shazikou-0042", "garbage", "lora-bins", 1734)
    assert reading.values == pytest.approx({"fill_level": 1 - 22 / 110})
    assert reading.ts == 1_777_593_600_903_412_201  # uplink_message.received_at, to the nanosecond


def test_chirpstack_event_uses_profile_tags_and_time() -> None:
    result = decode("chirpstack", (PAYLOADS / "chirpstack_up.json").read_bytes())
    (reading,) = result.batch.readings()
    assert (reading.sensor_id, reading.domain, reading.site, reading.seq) == (
        "0101010101010101", "fire", "huading-zone", 10)
    assert reading.values == {"temperature": 21.4, "humidity": 28.0, "wind_speed": 19.5, "rain_24h": 0.0}


@pytest.mark.parametrize("fmt, fixture, key", [("ttn", "ttn_uplink.json", "uplink_message"),
                                                ("chirpstack", "chirpstack_up.json", None)])
def test_lorawan_without_decoded_payload_is_rejected_as_no_decoded_payload(fmt: str, fixture: str, key: str | None) -> None:
    doc = json.loads((PAYLOADS / fixture).read_text())
    if key:
        del doc[key]["decoded_payload"]
    else:
        del doc["object"]
    with pytest.raises(PayloadError, match=f"^no decoded payload: {key or 'object'}.* is missing or empty"):
        parse(fmt, json.dumps(doc).encode())  # type: ignore[arg-type]


def test_lorawan_device_without_profile_is_rejected_with_what_to_do() -> None:
    doc = json.loads((PAYLOADS / "chirpstack_up.json").read_text())
    doc["deviceInfo"]["deviceProfileName"] = "unknown-profile"
    result = validate(parse("chirpstack", json.dumps(doc).encode()), "chirpstack", now_ns=NOW)
    assert result.batch is None and "add a device profile" in result.errors[0]


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe{}", "payload is not UTF-8: byte 0 is 0xff"),
    (b'{"ts": 1777593600, "values": {"pm25": 1}', "malformed JSON"),
    (b'{"ts": 1777593600, "values": {"pm25": NaN}}', "malformed JSON: NaN is not a number JSON allows"),
    (b"[]", "empty array"),
    (b"[" + b"9" * 5000 + b"]", "a number has thousands of digits"),
])
def test_malformed_native_messages_raise_payload_error_with_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as exc:
        parse("native", payload, route("city/air/st-1/pm-1/up"))
    assert reason in exc.value.reason


@pytest.mark.parametrize("payload, reason", [
    (b'{"values": {"pm25": 1}}', "reading: missing ts"),
    (b'{"ts": "yesterday", "values": {"pm25": 1}}', "is not RFC 3339"),
    (b'{"ts": "2026-05-01T08:00:00", "values": {"pm25": 1}}', "has no UTC offset"),
    (b'{"ts": 1777593600, "values": [1, 2]}', "values must be a JSON object"),
    (b'"hello"', "reading: a reading must be a JSON object, got a string"),
    (b'{"ts": 1777593600, "site": "elsewhere", "values": {"pm25": 1}}', "contradicts the topic"),
])
def test_malformed_native_readings_are_rejected_with_reason(payload: bytes, reason: str) -> None:
    result = decode("native", payload, "city/air/st-1/pm-1/up")
    assert result.batch is None and reason in result.errors[0]


def test_a_malformed_reading_does_not_reject_the_good_readings_of_its_array() -> None:
    items = [{"ts": 1777593600, "values": {"pm25": 1}}, {"ts": "yesterday", "values": {"pm25": 2}},
             {"ts": 1777593660, "values": {"pm25": 3}}]
    result = decode("native", json.dumps(items).encode(), "city/air/st-1/pm-1/up")
    assert [r.values["pm25"] for r in result.batch.readings()] == [1, 3]
    assert len(result.errors) == 1 and result.errors[0].startswith("reading 1: ts: timestamp 'yesterday'")


@pytest.mark.parametrize("values, reason", [
    ({"pm25": "12"}, "must be a finite number, got the string '12'"),
    ({"pm25": 10**30}, "outside the 64-bit integer range"),
    ({"pm25": -1}, "pm25: Input should be greater than or equal to 0"),
    ({"pm25": 1e9}, "pm25: Input should be less than or equal to 2000"),
    ({"pm1": 3}, "unknown field 'pm1' for domain air"),
    ({}, "no values"),
])
def test_invalid_values_are_rejected_with_the_field_named(values: dict, reason: str) -> None:
    payload = json.dumps({"ts": 1777593600, "values": values}).encode()
    result = decode("native", payload, "city/air/st-1/pm-1/up")
    assert result.batch is None and reason in result.errors[0]


def test_future_timestamp_is_rejected() -> None:
    result = decode("native", b'{"ts": 1890000000, "values": {"pm25": 1}}', "city/air/st-1/pm-1/up")
    assert "in the future; check the device clock" in result.errors[0]


def test_duplicate_reading_in_one_message_is_rejected_and_the_first_kept() -> None:
    one = {"ts": 1777593600, "values": {"pm25": 1}}
    result = decode("native", json.dumps([one, one]).encode(), "city/air/st-1/pm-1/up")
    assert len(result.batch) == 1 and result.errors == [
        "reading 1: duplicate reading for sensor 'pm-1' at 2026-05-01T00:00:00.000000000Z"]


def test_one_bad_reading_does_not_reject_the_good_ones() -> None:
    items = [{"ts": 1777593600 + i, "values": {"pm25": 10 + i}} for i in range(5)]
    items[2]["values"]["pm25"] = -5
    result = decode("native", json.dumps(items).encode(), "city/air/st-1/pm-1/up")
    assert len(result.batch) == 4 and len(result.errors) == 1 and result.errors[0].startswith("reading 2:")


def test_parking_occupancy_above_capacity_is_rejected_by_the_vectorised_rule() -> None:
    payload = json.dumps([{"ts": 1777593600, "values": {"capacity": 100, "occupied": 80}},
                          {"ts": 1777593660, "values": {"capacity": 100, "occupied": 120}}]).encode()
    result = decode("native", payload, "city/parking/mall-1/lot-1/up")
    assert len(result.batch) == 1 and "occupied=120 exceeds capacity=100" in result.errors[0]


def test_without_topic_the_domain_option_validates() -> None:
    payload = b'{"sensor_id": "s1", "site": "st", "ts": 1777593600, "values": {"pm25": 3}}'
    assert decode("native", payload, domain="air").batch.readings()[0].domain == "air"
    assert "no domain" in decode("native", payload).errors[0]


def test_unknown_topic_is_rejected_with_the_known_patterns() -> None:
    with pytest.raises(PayloadError, match="matches no source"):
        route("city/air/up")


def test_kafka_records_round_trip_into_the_same_columns() -> None:
    result = decode("native", (PAYLOADS / "native_array.json").read_bytes(), "city/air/laoshan-1/pm-07/up")
    from schemas.batch import ReadingBatch

    back, errors = ReadingBatch.from_records("air", [v for _, v, _, _ in result.batch.records()])
    assert errors == []
    assert back.readings() == result.batch.readings()
