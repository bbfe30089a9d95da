"""The spec clauses of issue 22, each named by its section: RFC 3339's grammar (§4.3, §5.6, §5.7), RFC
8428's numbers and labels (§4.3, §4.4), RFC 8798's units (§2, §3), The Things Stack v3 and ChirpStack v4
frame counters (uint32) and event times (the network server's, never one gateway's against it), and
the accepted window's lower edge, which names the clock reset it refuses. Each is also checked through
`smartcity decode`, which must refuse it with a reason saying what to fix, in under a second."""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.settings import Settings
from schemas.adapters import GATEWAY_TOLERANCE_NS, PayloadError, parse, route
from schemas.batch import validate
from schemas.timeparse import EARLIEST_NS, GPS_EPOCH_NS, TimeWindow, parse_ts
from smartcity.cli import app

NOW_S = 1_790_000_000                    # 2026-09-21T14:13:20Z
NOW = NOW_S * 10**9
WINDOW = TimeWindow(now_ns=NOW)
T = "2026-09-21T12:00:00Z"
TS = parse_ts(T, WINDOW.bounds())
ROLLOVER_S = 1024 * 7 * 86_400
runner = CliRunner()


def decode(fmt: str, doc: object, topic: str) -> tuple[list[str], list]:
    """(reasons, readings) of one message as the bridge decodes it."""
    try:
        raws = parse(fmt, json.dumps(doc).encode(), route(topic), window=WINDOW)  # type: ignore[arg-type]
    except PayloadError as exc:
        return [exc.reason], []
    result = validate(raws, fmt, now_ns=NOW)  # type: ignore[arg-type]
    return result.errors, result.batch.readings() if result.batch else []


def native(ts: object, values: dict | None = None) -> tuple[list[str], list]:
    return decode("native", {"ts": ts, "values": values or {"pm25": 30}}, "city/air/st-1/pm-1/up")


def refused(ts: object) -> str:
    reasons, readings = native(ts)
    assert not readings and len(reasons) == 1, (ts, reasons)
    return reasons[0]


# -- RFC 3339 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stamp", ["2026-09-21T20:00:00+0800", "2026-09-21T20:00:00+08", "2026-09-21T12:00:00-0000"])
def test_rfc3339_5_6_time_numoffset_is_hours_colon_minutes(stamp: str) -> None:
    assert "+hh:mm" in refused(stamp) or "not RFC 3339" in refused(stamp)


@pytest.mark.parametrize("stamp", ["2026-09-21T20:00:00+08:60", "2026-09-21T20:00:00+08:99", "2026-09-21T20:00:00+24:00"])
def test_rfc3339_5_6_offset_hours_at_most_23_and_minutes_at_most_59(stamp: str) -> None:
    assert "minutes 00-59 (RFC 3339 §5.6 time-numoffset)" in refused(stamp)


@pytest.mark.parametrize("stamp", [" " + T, T + " ", T + "\n", "\t" + T, T + "\u00a0"])
def test_rfc3339_5_6_a_date_time_has_no_surrounding_whitespace(stamp: str) -> None:
    assert "whitespace around it" in refused(stamp)


@pytest.mark.parametrize("stamp", ["2026-09-21t12:00:00z", "2026-09-21 12:00:00Z", "2026-09-21T20:00:00+08:00",
                                   "2026-09-21T12:00:00.000000000000Z"])
def test_rfc3339_5_6_lowercase_t_and_z_a_space_separator_and_offsets_are_read(stamp: str) -> None:
    (reading,) = native(stamp)[1]
    assert reading.ts == TS


def test_rfc3339_4_3_minus_00_00_is_utc_with_an_unknown_local_offset() -> None:
    assert native("2026-09-21T12:00:00-00:00")[1][0].ts == TS


@pytest.mark.parametrize("stamp", ["2026-09-21T12:00:60Z", "2016-12-31T23:58:60Z", "2026-06-30T23:59:60Z",
                                   "2016-12-31T23:59:60+08:00", "2016-12-31T23:59:61Z"])
def test_rfc3339_5_7_second_60_only_at_23_59_60_utc_of_a_leap_second_the_iers_inserted(stamp: str) -> None:
    reason = refused(stamp)
    assert "no leap second was inserted then" in reason or "second 00-59 (60 only for a leap second)" in reason


@pytest.mark.parametrize("stamp", ["2016-12-31T23:59:60Z", "2016-12-31T15:59:60-08:00", "2012-06-30T23:59:60.5Z"])
def test_rfc3339_5_7_a_leap_second_counts_as_the_first_instant_of_the_next_day(stamp: str) -> None:
    (reading,) = native(stamp)[1]
    day = parse_ts(stamp[:10] + "T00:00:00Z", WINDOW.bounds()) + 86_400 * 10**9
    assert reading.ts == day + (500_000_000 if ".5" in stamp else 0)


@pytest.mark.parametrize("stamp, accepted", [("2024-02-29T00:00:00Z", True), ("2026-02-29T00:00:00Z", False),
                                             ("2026-04-31T00:00:00Z", False), ("2026-09-21T24:00:00Z", False)])
def test_rfc3339_5_6_date_mday_by_month_and_year_and_hours_to_23(stamp: str, accepted: bool) -> None:
    reasons, readings = native(stamp)
    assert bool(readings) is accepted and (accepted or "not a valid" in reasons[0])


# -- the lower edge of the window: the clock resets it refuses ------------------------------------------

@pytest.mark.parametrize("stamp, fault", [
    (5, "Unix epoch 1970-01-01"), ("1970-01-01T00:00:00Z", "Unix epoch"),
    (GPS_EPOCH_NS // 10**9 + 30, "GPS epoch 1980-01-06"), ("1999-08-22T00:05:00Z", "first GPS week rollover"),
    ("2000-01-01T00:00:00Z", "usual RTC reset value"), ("2000-01-01T00:10:00Z", "usual RTC reset value"),
    ("2019-04-07T00:00:10Z", "second GPS week rollover"), (NOW_S - ROLLOVER_S, "1,024 weeks (19.6 years) behind now"),
    ("2009-12-31T23:59:59Z", "lower edge of the accepted window"),
])
def test_the_lower_edge_refuses_every_usual_reset_value_naming_the_fault(stamp: object, fault: str) -> None:
    assert fault in refused(stamp)
    seconds = stamp if isinstance(stamp, int) else datetime.fromisoformat(stamp).timestamp()
    if seconds < 2**28:
        return  # in SenML, a time below 2**28 is relative to now (RFC 8428 §4.5.3): no 1970 there
    senml = [{"bn": "pm-1/", "bt": seconds, "n": "pm25", "u": "ug/m3", "v": 3}]
    reasons, readings = decode("senml", senml, "city/air/st-1/pm-1/senml")
    assert not readings and fault in reasons[0]


def test_the_lower_edge_is_the_operator_setting_earliest_ts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().ingest.time_window().earliest_ns == EARLIEST_NS == parse_ts("2010-01-01T00:00:00Z")
    monkeypatch.setenv("SMARTCITY_INGEST__EARLIEST_TS", "2005-01-01T00:00:00Z")
    window = Settings().ingest.time_window()
    assert window.earliest_ns == parse_ts("2005-01-01T00:00:00Z", (0, NOW))
    assert parse_ts("2006-05-01T00:00:00Z", window.bounds()) > 0  # an archive, once the operator allows it


# -- RFC 8428 (SenML) and RFC 8798 (its units) --------------------------------------------------------

def senml(*records: dict, domain: str = "air") -> tuple[list[str], list]:
    return decode("senml", [{"bn": "pm-1/", "bt": NOW_S - 60, **records[0]}, *records[1:]], f"city/{domain}/st-1/pm-1/senml")


@pytest.mark.parametrize("bver, accepted", [(10.0, True), (10, True), (5.0, True), (10.5, False), ("10", False),
                                            (True, False), (11.0, False), (0, False)])
def test_rfc8428_4_4_bver_is_a_json_number_so_10_0_is_version_10(bver: object, accepted: bool) -> None:
    reasons, readings = senml({"bver": bver, "n": "pm25", "u": "ug/m3", "v": 3})
    assert bool(readings) is accepted and (accepted or "bver" in reasons[0])


def test_rfc8428_4_4_an_unknown_label_in_a_base_only_record_is_ignored_not_a_failure() -> None:
    reasons, readings = senml({"vendor": "acme"}, {"n": "pm25", "u": "ug/m3", "v": 3},
                              {"bu": "ug/m3", "firmware": 2}, {"n": "pm10", "v": 4})
    assert reasons == [] and [r.values for r in readings] == [{"pm25": 3.0, "pm10": 4.0}]


def test_rfc8428_4_4_a_label_ending_in_underscore_must_be_understood_so_it_rejects_the_pack() -> None:
    reasons, readings = senml({"vendor_": "acme"}, {"n": "pm25", "u": "ug/m3", "v": 3})
    assert not readings and "must be understood (RFC 8428 §4.4)" in reasons[0]


@pytest.mark.parametrize("record", [{"v": True}, {"v": "3"}, {"v": None}, {"v": {"x": 1}}, {"vb": True}])
def test_rfc8428_4_3_a_value_is_a_number_and_a_boolean_feeds_only_a_flag(record: dict) -> None:
    reasons, readings = senml({"n": "pm25", "u": "ug/m3", **record})
    assert not readings and "pm25" in reasons[0]
    assert senml({"n": "smoke", "vb": True}, domain="fire")[1][0].values == {"smoke": 1.0}


@pytest.mark.parametrize("extra", [{"vb": True}, {"vs": "3"}, {"vd": "AQ"}])
def test_rfc8428_4_3_a_record_with_two_values_is_refused_not_read_as_its_first(extra: dict) -> None:
    reasons, readings = senml({"n": "pm25", "u": "ug/m3", "v": 3, **extra})
    assert not readings and "exactly one value (RFC 8428 §4.3)" in reasons[0]


@pytest.mark.parametrize("field, unit, value, expected", [
    ("pm25", "kg/m3", 3.5e-8, 35.0), ("co", "kg/m3", 1.2e-6, 1.2),      # RFC 8798 §2: kg/m3, mass concentration
    ("pm25", "ug/m3", 35, 35.0), ("humidity", "/100", 40, 40.0),        # RFC 8798 §3: secondary units
    ("temperature", "K", 293.15, 20.0), ("temperature", "Cel", 20, 20.0),
])
def test_rfc8798_2_and_3_units_convert_into_the_field_s_unit(field: str, unit: str, value: float, expected: float) -> None:
    reasons, readings = senml({"n": field, "u": unit, "v": value})
    assert reasons == [] and readings[0].values[field] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("field, unit", [("pm25", "ppm"), ("pm25", "kg"), ("temperature", "C"), ("pm25", "kg/m")])
def test_rfc8798_a_unit_of_another_quantity_is_refused_naming_it(field: str, unit: str) -> None:
    reasons, readings = senml({"n": field, "u": unit, "v": 1})
    assert not readings and f"unit {unit!r} cannot be converted" in reasons[0]


def test_rfc8798_fire_rain_in_mm_and_wind_in_km_h_and_m_s() -> None:
    reasons, readings = senml({"n": "rain_24h", "u": "mm", "v": 3}, {"n": "wind_speed", "u": "m/s", "v": 10},
                              domain="fire")
    assert reasons == [] and readings[0].values == {"rain_24h": 3.0, "wind_speed": 36.0}


# -- The Things Stack v3 and ChirpStack v4 ------------------------------------------------------------

def ttn(gateways: list[dict], network: bool = True, **up: object) -> tuple[list[str], list]:
    uplink = {"f_cnt": 7, "decoded_payload": {"pm2_5": 30}, "rx_metadata": gateways,
              **({"received_at": T} if network else {}), **up}
    return decode("ttn", {"end_device_ids": {"device_id": "d1", "application_ids": {"application_id": "laoshan-air-lora"}},
                          "uplink_message": uplink}, "v3/laoshan-air-lora@ttn/devices/d1/up")


def chirpstack(rx: list[dict], **event: object) -> tuple[list[str], list]:
    return decode("chirpstack", {"deviceInfo": {"devEui": "0101", "deviceProfileName": "laoshan-air-lora"},
                                 "object": {"pm2_5": 30}, "fCnt": 7, "rxInfo": rx, **event},
                  "application/a/device/0101/event/up")


def at(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{round(seconds % 1 * 1000):03d}Z"


def since_gps(seconds: float) -> str:
    return f"{seconds - GPS_EPOCH_NS / 1e9 + 18:.3f}s"


@pytest.mark.parametrize("counter, accepted", [(2**32 - 1, True), (2**32, False), (-1, False), (7.0, True),
                                                (7.5, False), ("7", False), (True, False)])
def test_tts_f_cnt_and_chirpstack_fcnt_are_uint32(counter: object, accepted: bool) -> None:
    for reasons, readings in (ttn([], f_cnt=counter), chirpstack([{"nsTime": T}], fCnt=counter)):
        assert bool(readings) is accepted, reasons
        assert accepted or "non-negative integer" in reasons[0]
    if not accepted and counter == 2**32:
        assert "uint32" in ttn([], f_cnt=counter)[0][0]


def test_tts_a_gateway_gps_time_1024_weeks_back_never_outranks_the_network_server() -> None:
    rolled = at(TS / 1e9 - ROLLOVER_S)
    _, (reading,) = ttn([{"gps_time": rolled, "time": rolled}, {"time": T}])
    assert reading.ts == TS
    _, (alone,) = ttn([{"gps_time": rolled}])
    assert alone.ts == TS


def test_tts_a_gateway_gps_time_agreeing_with_the_network_server_is_taken_for_its_precision() -> None:
    near = TS / 1e9 - GATEWAY_TOLERANCE_NS / 1e9 / 2
    assert ttn([{"gps_time": at(near)}])[1][0].ts == round(near * 1000) * 10**6
    assert ttn([{"gps_time": at(TS / 1e9 - 3600)}])[1][0].ts == TS  # an hour off: the network server's
    assert ttn([{"time": at(TS / 1e9 - 1)}])[1][0].ts == TS  # a gateway's own clock never beats it


def test_tts_without_network_time_most_gateways_decide_and_a_tie_is_refused() -> None:
    _, (reading,) = ttn([{"gps_time": at(TS / 1e9 - 86_400)}, {"time": T}, {"time": at(TS / 1e9 + 1)}], network=False)
    assert reading.ts == TS
    reasons, readings = ttn([{"gps_time": at(TS / 1e9 - 86_400)}, {"time": T}], network=False)
    assert not readings and "the gateways disagree on the time and the network server gave none" in reasons[0]
    _, (one,) = ttn([{"gps_time": at(TS / 1e9 - ROLLOVER_S)}, {"time": T}], network=False)
    assert one.ts == TS  # a time below the lower edge casts no vote


def test_chirpstack_a_rolled_over_gateway_never_outranks_ns_time_even_copied_into_time() -> None:
    rolled = TS / 1e9 - ROLLOVER_S
    _, (reading,) = chirpstack([{"timeSinceGpsEpoch": since_gps(rolled), "nsTime": T}])
    assert reading.ts == TS
    _, (copied,) = chirpstack([{"gwTime": at(rolled), "nsTime": T}, {"nsTime": T}], time=at(rolled))
    assert copied.ts == TS
    near = TS / 1e9 - 1.5
    assert chirpstack([{"timeSinceGpsEpoch": since_gps(near), "nsTime": T}])[1][0].ts == round(near * 1000) * 10**6


# -- `smartcity decode`: each class refused with what to fix, in under a second ------------------------

CLI_CASES = [
    ("native", "city/air/st-1/pm-1/up", {"ts": T, "values": {"pm25": True}}, "takes no true/false"),
    ("native", "city/air/st-1/pm-1/up", {"ts": "2000-01-01T00:00:00Z", "values": {"pm25": 3}}, "RTC reset value"),
    ("native", "city/air/st-1/pm-1/up", {"ts": "2026-09-21T20:00:00+0800", "values": {"pm25": 3}}, "+08:00, not +0800"),
    ("native", "city/air/st-1/pm-1/up", {"ts": " " + T, "values": {"pm25": 3}}, "whitespace around it"),
    ("native", "city/air/st-1/pm-1/up", {"ts": "2026-06-30T12:00:60Z", "values": {"pm25": 3}}, "leap second"),
    ("ttn", "v3/a@ttn/devices/d1/up", {"end_device_ids": {"device_id": "d1", "application_ids": {
        "application_id": "laoshan-air-lora"}}, "uplink_message": {"received_at": T, "f_cnt": 2**32,
                                                                   "decoded_payload": {"pm2_5": 3}}}, "uint32"),
    ("chirpstack", "application/a/device/0101/event/up", {"deviceInfo": {"devEui": "0101", "deviceProfileName":
        "laoshan-bins"}, "time": T, "object": {"distance_cm": True}}, "needs a number"),
    ("ttn", "v3/a@ttn/devices/d1/up", {"end_device_ids": {"device_id": "d1", "application_ids": {
        "application_id": "laoshan-air-lora"}}, "uplink_message": {"received_at": T, "decoded_payload": {
            "pm2_5": "1" * 200_000}}}, "numbers_as_strings = true"),
]


@pytest.mark.parametrize("fmt, topic, doc, fix", CLI_CASES, ids=[c[3] for c in CLI_CASES])
def test_smartcity_decode_refuses_each_class_saying_what_to_fix_in_under_a_second(
        fmt: str, topic: str, doc: dict, fix: str, tmp_path: Path) -> None:
    if "ts" in doc and doc["ts"] == T:
        doc = {**doc, "ts": at(time.time() - 60)}
    for key in ("received_at", "time"):
        for holder in (doc, doc.get("uplink_message", {})):
            if holder.get(key) == T:
                holder[key] = at(time.time() - 60)
    file = tmp_path / "payload.json"
    file.write_text(json.dumps(doc))
    started = time.perf_counter()
    result = runner.invoke(app, ["decode", "-f", fmt, "-t", topic, str(file)])
    assert time.perf_counter() - started < 1.0
    assert result.exit_code == 2 and "Traceback" not in result.output and fix in result.stderr, result.stderr


def test_a_parking_spot_profile_declares_its_boolean_occupied_a_flag_and_a_lot_count_still_passes() -> None:
    doc = {"end_device_ids": {"device_id": "spot-1", "application_ids": {"application_id": "laoshan-parking-spot"}},
           "uplink_message": {"received_at": T, "decoded_payload": {"occupied": True, "spot": 1}}}
    assert decode("ttn", doc, "v3/a@ttn/devices/spot-1/up")[1][0].values == {"occupied": 1.0, "spot": 1.0}
    doc["uplink_message"]["decoded_payload"] = {"occupied": 0, "spot": True}
    assert decode("ttn", doc, "v3/a@ttn/devices/spot-1/up")[1][0].values == {"occupied": 0.0, "spot": 1.0}
    reasons, _ = decode("native", {"ts": T, "values": {"occupied": True, "capacity": 10}},
                        "city/parking/lot-1/p-1/up")  # natively, occupied is a count: no boolean
    assert "only a flag field takes true/false (spot)" in reasons[0]
