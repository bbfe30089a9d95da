"""Property: whatever arrives, every adapter answers with readings or a deliberate `PayloadError`, and the
columnar path turns every reading into exactly one of: a row inside the bounds, or a reason.

An unexpected exception is a failure here, never a pass: `parse()` no longer disguises bugs as
rejections (the bridge isolates them per message instead). The generators are format-aware: each
message is a real skeleton of its format with hostile leaves (numbers past int64 and double, epoch
milliseconds, impossible dates, wrong types), written as JSON text so that `1e309` and 80-digit
integers reach the parser as devices send them. Seeded, so a failure reproduces.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

from schemas import adapters
from schemas.adapters import FORMATS, PayloadError, RawReading, parse, route
from schemas.batch import MessageReadings, ReadingBatch, validate_many
from schemas.timeparse import TimeWindow

NOW = 1_790_000_000 * 10**9
WINDOW = TimeWindow(now_ns=NOW)
LO, HI = WINDOW.bounds()
SEED = 20261127
TOPICS = {"native": "city/air/st-1/pm-1/up", "senml": "city/air/st-1/pm-1/senml",
          "ttn": "v3/laoshan@ttn/devices/d1/up", "chirpstack": "application/a/device/0101/event/up"}
FUZZ = settings(max_examples=100, deadline=None)
QUICK = (Phase.explicit, Phase.generate)  # the tests of the tests need a failure, not its shrunk form


class Raw(str):
    """A JSON number token written verbatim (1e309, 80 digits), which json.dumps could not produce."""


def dumps(doc: object) -> bytes:
    tokens: list[str] = []

    def mark(value: object) -> object:
        if isinstance(value, Raw):
            tokens.append(str(value))
            return f"\x00{len(tokens) - 1}\x00"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(doc))
    for i, token in enumerate(tokens):
        text = text.replace(f'"\\u0000{i}\\u0000"', token)
    return text.encode()


now_s = NOW // 10**9
hostile_numbers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-(10**90), max_value=10**90),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([now_s * 1000, now_s * 10**6, now_s * 10**9, float(now_s * 1000), 2**63 - 1, 2**63, -1, 0]),
    st.sampled_from(["1e309", "-1e309", "1e-400", "9" * 400, "-0", "1E+308", "4" * 4400]).map(Raw),
)
good_numbers = st.integers(min_value=0, max_value=100) | st.floats(min_value=0, max_value=100)
numbers = st.one_of(good_numbers, good_numbers, hostile_numbers)
good_stamps = st.one_of(
    st.integers(min_value=now_s - 10**7, max_value=now_s),
    st.floats(min_value=now_s - 10**7, max_value=now_s),
    st.tuples(st.integers(min_value=now_s - 10**7, max_value=now_s), st.sampled_from(["Z", "z", "+08:00", "-00:00"]))
    .map(lambda p: __import__("datetime").datetime.fromtimestamp(p[0]).isoformat() + p[1]),
)
hostile_stamps = st.one_of(
    hostile_numbers,
    st.tuples(st.datetimes(), st.sampled_from(["Z", "z", "+08:00", ""])).map(lambda p: p[0].isoformat() + p[1]),
    st.sampled_from(["9999-12-31T23:59:59Z", "50000-01-01T00:00:00Z", "2026-05-01t00:00:00.1234567891234z",
                     "2016-12-31T23:59:60Z", "2026-02-30T00:00:00Z", "0001-01-01T00:00:00Z", "", "now"]),
    st.text(max_size=12), st.none(), st.booleans(), st.lists(hostile_numbers, max_size=2),
)
stamps = st.one_of(good_stamps, good_stamps, good_stamps, hostile_stamps)
leaves = st.one_of(numbers, st.text(max_size=8), st.none(), st.booleans())
values = st.one_of(good_numbers, good_numbers, good_numbers, leaves)
json_values = st.recursive(leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                           max_leaves=15)
fields = st.sampled_from(["pm25", "pm10", "no2", "temperature", "humidity", "pm25", "pm10", "pm1", ""])


def mostly(structured: st.SearchStrategy) -> st.SearchStrategy:
    """Three in four messages keep their format's skeleton; the rest are any JSON at all."""
    return st.one_of(structured, structured, structured, json_values)


@st.composite
def native(draw: st.DrawFn) -> object:
    reading = st.fixed_dictionaries(
        {"ts": stamps, "values": mostly(st.dictionaries(fields, values, min_size=1, max_size=4))},
        optional={"seq": numbers, "lat": numbers, "lon": numbers, "sensor_id": st.sampled_from(["pm-1", "pm-1", "pm-2", 7]),
                  "site": st.sampled_from(["st-1", "st-1", "elsewhere", None])})
    return draw(mostly(reading | st.lists(reading, min_size=1, max_size=5)))


@st.composite
def senml(draw: st.DrawFn) -> object:
    record = st.fixed_dictionaries({"n": fields, "v": values}, optional={
        "bn": st.sampled_from(["", "pm-1/", "pm-2:", "urn:dev:ow:10e2073a01080063:", "bad name/", 3]), "bt": stamps,
        "bu": st.sampled_from(["ug/m3", "Cel", "C", "/", "%RH", "kg"]), "bv": numbers, "bver": st.sampled_from([5, 10, 11, "x"]),
        "u": st.sampled_from(["ug/m3", "Cel", "C", "/", 5]), "vb": leaves, "vs": leaves,
        "vd": leaves, "s": numbers, "t": st.one_of(st.integers(-3600, 0), numbers), "ut": numbers})
    base = st.fixed_dictionaries({"bn": st.sampled_from(["pm-1/", "pm-2:"]), "bt": good_stamps, "n": fields, "v": values})
    return draw(mostly(st.tuples(base, st.lists(record, max_size=6)).map(lambda p: [p[0], *p[1]])))


@st.composite
def lorawan(draw: st.DrawFn, fmt: str) -> object:
    decoded = mostly(st.dictionaries(st.sampled_from(["pm2_5", "pm10", "temp", "hum", "latitude", "longitude", "x"]),
                                     values, min_size=1, max_size=5))
    if fmt == "ttn":
        gateway = st.fixed_dictionaries({}, optional={"time": stamps, "gps_time": stamps})
        return draw(mostly(st.fixed_dictionaries({
            "end_device_ids": st.fixed_dictionaries({"device_id": st.sampled_from(["d1", "d1", "", 4]),
                                                     "application_ids": st.fixed_dictionaries(
                                                         {"application_id": st.sampled_from(["laoshan-air-lora", "x", 1])})}),
            "uplink_message": st.fixed_dictionaries({"decoded_payload": decoded, "received_at": stamps}, optional={
                "f_cnt": numbers, "rx_metadata": mostly(st.lists(gateway, max_size=3)),
                "locations": mostly(st.dictionaries(st.sampled_from(["user", "frm-payload"]), st.dictionaries(
                    st.sampled_from(["latitude", "longitude"]), values)))})},
            optional={"received_at": stamps})))
    gateway = st.fixed_dictionaries({}, optional={"gwTime": stamps, "nsTime": stamps,
                                                  "timeSinceGpsEpoch": st.sampled_from(["1400000000.5s", "9" * 12 + "s", "x", 5])})
    return draw(mostly(st.fixed_dictionaries({
        "deviceInfo": st.fixed_dictionaries({"devEui": st.sampled_from(["0101010101010101", "0101010101010101", ""]),
                                             "deviceProfileName": st.sampled_from(["laoshan-air-lora", "laoshan-bins", "y"])},
                                            optional={"tags": st.dictionaries(st.sampled_from(["site"]), leaves)}),
        "object": decoded, "time": stamps},
        optional={"fCnt": numbers, "rxInfo": mostly(st.lists(gateway, max_size=3))})))


SHAPED = {"native": native(), "senml": senml(), "ttn": lorawan("ttn"), "chirpstack": lorawan("chirpstack")}


def check_message(fmt: str, payload: bytes) -> list[RawReading]:
    """The property for one message: readings or a deliberate rejection; each reading becomes exactly one
    row inside the bounds (that encodes and decodes back) or one reason. Anything else propagates."""
    try:
        raws = parse(fmt, payload, route(TOPICS[fmt]), window=WINDOW)  # type: ignore[arg-type]
    except PayloadError as exc:
        assert exc.reason and len(exc.reason) < 20_000
        return []
    assert isinstance(raws, list) and raws and all(isinstance(r, RawReading) for r in raws)
    result = validate_many([MessageReadings(raws, fmt, None, NOW)], now_ns=NOW)  # type: ignore[arg-type]
    rows = sum(len(batch) for batch, _ in result.batches.values())
    assert rows + len(result.errors.get(0, [])) == len(raws)
    for name, (batch, _) in result.batches.items():
        assert batch.ts.dtype == np.int64 and ((batch.ts >= LO) & (batch.ts <= HI)).all()
        assert np.isfinite(batch.values[~np.isnan(batch.values)]).all()
        back, errors = ReadingBatch.from_records(name, [v for _, v, _, _ in batch.records()])
        assert errors == [] and len(back) == len(batch)
    return raws


@seed(SEED)
@FUZZ
@given(st.sampled_from(FORMATS), st.binary(max_size=300))
def test_arbitrary_bytes_give_readings_or_reasons_only(fmt: str, payload: bytes) -> None:
    check_message(fmt, payload)


@seed(SEED)
@FUZZ
@given(st.sampled_from(FORMATS), json_values)
def test_arbitrary_json_gives_readings_or_reasons_only(fmt: str, doc: object) -> None:
    check_message(fmt, dumps(doc))


def shaped_property(fmt: str, **options: object):
    """The property over format-shaped hostile messages of `fmt`, as a runnable Hypothesis test."""
    @seed(SEED)
    @settings(FUZZ, **options)
    @given(SHAPED[fmt])
    def run(doc: object) -> None:
        check_message(fmt, dumps(doc))

    return run


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_shaped_hostile_messages_give_readings_or_reasons_only(fmt: str) -> None:
    shaped_property(fmt, max_examples=200)()


@seed(SEED)
@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(*[SHAPED[f].map(lambda doc, f=f: (f, doc)) for f in FORMATS]), min_size=2, max_size=8))
def test_validating_many_messages_together_equals_validating_each_alone(messages: list) -> None:
    """The columnar path isolates messages: a hostile one changes nothing for its neighbours."""
    parsed = []
    for fmt, doc in messages:
        try:
            parsed.append(MessageReadings(parse(fmt, dumps(doc), route(TOPICS[fmt]), window=WINDOW), fmt, None, NOW))
        except PayloadError:
            continue
    together = validate_many(parsed, now_ns=NOW)
    for m, message in enumerate(parsed):
        alone = validate_many([message], now_ns=NOW)
        assert together.errors.get(m, []) == alone.errors.get(0, [])
        rows = {d: int((message_of == m).sum()) for d, (_, message_of) in together.batches.items()}
        assert {d: n for d, n in rows.items() if n} == {d: len(b) for d, (b, _) in alone.batches.items()}


def test_the_fuzz_properties_fail_on_a_parser_that_raises(monkeypatch) -> None:
    """Attack the tests themselves: a parser bug must fail them, not pass as a rejection."""
    monkeypatch.setitem(adapters.PARSERS, "native", lambda *a, **k: 1 // 0)
    with pytest.raises(ZeroDivisionError):
        shaped_property("native", phases=QUICK)()


def test_the_fuzz_properties_fail_when_times_are_not_bounded(monkeypatch) -> None:
    """The original bug class: a timestamp parser without the window lets epoch ms reach int64 columns."""
    monkeypatch.setattr(adapters, "parse_ts", lambda value, bounds=None: int(value * 10**9)
                        if isinstance(value, (int, float)) and not isinstance(value, bool) else 1)
    with pytest.raises((OverflowError, AssertionError, ExceptionGroup)) as failure:
        shaped_property("native", phases=QUICK)()
    assert not failure.errisinstance(PayloadError)
