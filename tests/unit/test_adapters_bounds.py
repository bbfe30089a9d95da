"""Numbers at the boundary: every time and integer a payload carries is bounded, with a reason, in every
format and every form it can take (classes of hostile input, not a list of examples)."""
from __future__ import annotations

import json

import pytest

from schemas.adapters import PayloadError, parse, route
from schemas.batch import ReadingBatch, validate
from schemas.envelope import DeadLetter
from schemas.timeparse import TimeWindow, parse_ts

NOW_S = 1_790_000_000                     # 2026-09-21T14:13:20Z
WINDOW = TimeWindow(now_ns=NOW_S * 10**9)  # 2010-01-01 .. now + 300 s
TOPICS = {"native": "city/air/st-1/pm-1/up", "senml": "city/air/st-1/pm-1/senml",
          "ttn": "v3/laoshan@ttn/devices/d1/up", "chirpstack": "application/a/device/0101/event/up"}


def reasons(fmt: str, payload: bytes) -> list[str]:
    """Every rejection reason for one message; fails the test on anything but a deliberate rejection."""
    try:
        raws = parse(fmt, payload, route(TOPICS[fmt]), window=WINDOW)  # type: ignore[arg-type]
    except PayloadError as exc:
        return [exc.reason]
    result = validate(raws, fmt, domain="air", now_ns=WINDOW.now_ns)  # type: ignore[arg-type]
    return result.errors


def with_time(fmt: str, stamp: object) -> bytes:
    """A message of `fmt` whose event time is `stamp`, in that format's own place for it."""
    if fmt == "native":
        return json.dumps({"ts": stamp, "values": {"pm25": 30}}).encode()
    if fmt == "senml":
        return json.dumps([{"bn": "pm-1/", "bt": stamp, "n": "pm25", "v": 30}]).encode()
    if fmt == "ttn":
        return json.dumps({"end_device_ids": {"device_id": "d1", "application_ids": {"application_id": "laoshan-air-lora"}},
                           "received_at": stamp, "uplink_message": {"decoded_payload": {"pm2_5": 30}}}).encode()
    return json.dumps({"deviceInfo": {"devEui": "0101", "deviceProfileName": "laoshan-air-lora"}, "time": stamp,
                       "object": {"pm2_5": 30}}).encode()


def rfc3339(seconds: int) -> str:
    from schemas.timeparse import format_ts

    return format_ts(seconds * 10**9)


@pytest.mark.parametrize("fmt", ["native", "senml"])
@pytest.mark.parametrize("scale, unit", [(10**3, "milliseconds"), (10**6, "microseconds"), (10**9, "nanoseconds")])
@pytest.mark.parametrize("as_float", [False, True])
def test_epoch_in_sub_second_units_is_rejected_saying_which_unit_and_what_to_send(fmt: str, scale: int, unit: str,
                                                                                  as_float: bool) -> None:
    stamp = (NOW_S - 3600) * scale
    (reason,) = reasons(fmt, with_time(fmt, float(stamp) if as_float else stamp))
    assert f"looks like epoch {unit}" in reason and "send epoch seconds" in reason


@pytest.mark.parametrize("fmt", ["native", "senml", "ttn", "chirpstack"])
@pytest.mark.parametrize("stamp", [
    NOW_S + 3600, float(NOW_S + 3600), 2**63, 2**64 + 1, 10**80, 1e300, 1.7e308,
    "2262-04-12T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2100-01-01t00:00:00z",
])
def test_times_after_the_window_are_rejected_as_future_in_every_format(fmt: str, stamp: object) -> None:
    if fmt in ("ttn", "chirpstack") and not isinstance(stamp, str):
        stamp = rfc3339(NOW_S + 3600)  # the network servers write RFC 3339 only
    (reason,) = reasons(fmt, with_time(fmt, stamp))
    if fmt == "senml" and (isinstance(stamp, str) or isinstance(stamp, int) and stamp >= 2**63):
        assert reason.startswith("record 0: bt ")  # SenML times are numbers, and doubles at that
    else:
        assert "in the future; check the device clock" in reason or "looks like epoch" in reason


@pytest.mark.parametrize("fmt", ["native", "ttn", "chirpstack"])
@pytest.mark.parametrize("stamp", [1, 0, 946_684_799, "1999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z"])
def test_times_before_the_lower_edge_are_rejected_naming_the_reset_or_the_clock_never_set(fmt: str, stamp: object) -> None:
    if fmt != "native" and not isinstance(stamp, str):
        stamp = "1999-12-31T23:59:59Z"
    (reason,) = reasons(fmt, with_time(fmt, stamp))
    assert "is refused: it counts from" in reason or "the device clock is not set" in reason


@pytest.mark.parametrize("fmt", ["native", "ttn", "chirpstack"])
@pytest.mark.parametrize("stamp", ["50000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                                   "２０２６-05-01T00:00:00Z", "2026-05-01T25:00:00Z", "", "x" * 100_000])
def test_impossible_dates_are_rejected_as_not_rfc3339(fmt: str, stamp: str) -> None:
    (reason,) = reasons(fmt, with_time(fmt, stamp))
    assert "RFC 3339" in reason or "not a valid date" in reason
    assert len(reason) < 400


def test_the_window_edges_are_inclusive_and_configurable() -> None:
    window = TimeWindow(earliest_ns=1_600_000_000 * 10**9, future_skew_ns=60 * 10**9, now_ns=NOW_S * 10**9)
    assert parse_ts(NOW_S + 60, window.bounds()) == (NOW_S + 60) * 10**9
    assert parse_ts(1_600_000_000, window.bounds()) == 1_600_000_000 * 10**9
    with pytest.raises(ValueError, match="in the future"):
        parse_ts(NOW_S + 61, window.bounds())
    with pytest.raises(ValueError, match="clock is not set"):
        parse_ts(1_599_999_999, window.bounds())


@pytest.mark.parametrize("value, reason", [
    (10**19, "outside the 64-bit integer range"),
    (-(10**19), "outside the 64-bit integer range"),
    (int("7" * 80), "an integer of 80 digits, outside the 64-bit integer range"),
    ("1e309", "overflowed to infinity"),
    ("-1e309", "overflowed to infinity"),
])
def test_values_beyond_int64_or_double_are_rejected_with_a_reason(value: object, reason: str) -> None:
    text = value if isinstance(value, str) else str(value)
    payload = b'{"ts": %d, "values": {"pm25": %s}}' % (NOW_S, text.encode())
    (got,) = reasons("native", payload)
    assert reason in got and "field 'pm25'" in got


@pytest.mark.parametrize("fmt, payload", [
    ("native", b'{"ts": %d, "seq": %d, "values": {"pm25": 1}}' % (NOW_S, 2**63)),
    ("native", b'{"ts": %d, "seq": -1, "values": {"pm25": 1}}' % NOW_S),
    ("native", b'{"ts": %d, "seq": 1.5, "values": {"pm25": 1}}' % NOW_S),
    ("ttn", with_time("ttn", rfc3339(NOW_S)).replace(b'"uplink_message": {', b'"uplink_message": {"f_cnt": %d, ' % 2**64)),
    ("chirpstack", with_time("chirpstack", rfc3339(NOW_S)).replace(b'"time"', b'"fCnt": %d, "time"' % 10**40)),
])
def test_counters_beyond_int64_are_rejected(fmt: str, payload: bytes) -> None:
    (reason,) = reasons(fmt, payload)
    assert "must be a non-negative integer" in reason


@pytest.mark.parametrize("key, value", [("lat", "1e309"), ("lon", str(10**50)), ("lat", "91"), ("lon", "true")])
def test_locations_must_be_finite_and_on_the_globe(key: str, value: str) -> None:
    payload = b'{"ts": %d, "%s": %s, "values": {"pm25": 1}}' % (NOW_S, key.encode(), value.encode())
    (reason,) = reasons("native", payload)
    assert reason.split(": ", 1)[1].startswith(f"{key} ")  # "reading:" from parsing, "reading 0:" from the range check


def test_senml_times_sum_and_overflow_are_bounded() -> None:
    assert "overflowed to infinity" in reasons("senml", b'[{"bn": "s/", "bt": 1e308, "n": "pm25", "v": 1, "t": 1e309}]')[0]
    assert "in the future" in reasons("senml", b'[{"bn": "s/", "bt": 1.7e308, "n": "pm25", "v": 1, "t": 1}]')[0]
    assert "not a finite number" in reasons("senml", b'[{"bn": "s/", "bt": 1.7e308, "n": "pm25", "v": 1, "t": 1.7e308}]')[0]
    assert "clock is not set" in reasons("senml", b'[{"bn": "s/", "n": "pm25", "v": 1, "t": -1e12}]')[0]


def test_timestamps_keep_nanoseconds_exactly() -> None:
    assert parse_ts(1.276020076001e9) == 1_276_020_076_001_000_000
    assert parse_ts("2026-05-01T00:00:00.123456789123Z") == 1_777_593_600_123_456_789


def test_a_10_mb_payload_gives_a_small_dead_letter_with_size_and_digest() -> None:
    import hashlib

    payload = b'{"ts": 1, "values": {"pm25": "' + b"x" * 10_000_000 + b'"}}'
    record = DeadLetter.of("city/air/st/s/up", payload, "r" * 1_000_000)
    assert len(record.model_dump_json()) < 100_000
    assert record.raw_size == len(payload) and record.raw_truncated and len(record.raw()) == 64 * 1024
    assert record.raw_sha256 == hashlib.sha256(payload).hexdigest() and len(record.reason) <= 4096


def test_kafka_records_with_unrepresentable_numbers_are_reasons_not_a_crash() -> None:
    good = json.dumps({"sensor_id": "s", "site": "x", "ts": NOW_S * 10**9, "values": {"pm25": 1.0}}).encode()
    bad = [json.dumps({"sensor_id": "s", "ts": 10**30, "values": {}}).encode(),
           json.dumps({"sensor_id": "s", "ts": "soon", "values": {}}).encode(),
           json.dumps({"sensor_id": "s", "ts": 5, "seq": 2**70, "values": {}}).encode(),
           json.dumps({"sensor_id": "s", "ts": 5, "values": {"pm25": "x"}}).encode(),
           b"[1]", b"\xff"]
    batch, errors = ReadingBatch.from_records("air", [good, *bad])
    assert len(batch) == 1 and len(errors) == len(bad)
