"""The public spec examples, verbatim (tests/fixtures/specs, sources in its README), decoded as a user
would: RFC 8428 §5.1 SenML packs on a city topic, The Things Stack v3 and ChirpStack v4 documentation
payloads with operator device profiles. What the project's domains cannot take is rejected with a
reason, never a crash."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.adapters import PayloadError, TopicInfo, parse, route
from schemas.batch import validate
from schemas.timeparse import TimeWindow, parse_ts

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"
NOW = 1_790_000_000 * 10**9  # 2026-09-21, after every example's timestamps
WINDOW = TimeWindow(now_ns=NOW)
AIR = "city/air/st-1/gw-1/senml"
TTN_TOPIC = "v3/app1@tenant1/devices/dev1/up"  # the docs' application, tenant and device
CHIRPSTACK_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"


def spec(name: str) -> bytes:
    return (SPECS / name).read_bytes()


def decode(fmt: str, payload: bytes, topic: str | None = None):
    info = route(topic) if topic else TopicInfo(fmt)  # type: ignore[arg-type]
    return validate(parse(fmt, payload, info, window=WINDOW), fmt, now_ns=NOW)  # type: ignore[arg-type]


def raw(name: str) -> list:
    return parse("senml", spec(name), window=WINDOW)


@pytest.fixture
def docs_profiles(monkeypatch) -> None:
    """The operator's device file with profiles for the docs' application and device profile."""
    monkeypatch.setenv("SMARTCITY_DEVICES", str(SPECS / "docs-devices.toml"))


# -- RFC 8428 §5.1 -----------------------------------------------------------------------------------

def test_5_1_1_a_device_name_with_unit_Cel_is_that_sensor_s_temperature_now() -> None:
    result = decode("senml", spec("rfc8428_5_1_1_single_data_point.json"), AIR)
    assert result.errors == []
    (reading,) = result.batch.readings()
    assert (reading.sensor_id, reading.site, reading.ts) == ("urn:dev:ow:10e2073a01080063", "st-1", NOW)
    assert reading.values == {"temperature": 23.1}


def test_5_1_1_without_a_domain_says_why_the_unit_cannot_be_placed() -> None:
    (rec,) = raw("rfc8428_5_1_1_single_data_point.json")
    assert "urn:dev:ow:10e2073a01080063" in rec.rejected and "publish on city/<domain>" in rec.rejected


def test_5_1_2_voltage_and_current_now_keep_names_units_and_sensor() -> None:
    (reading,) = raw("rfc8428_5_1_2_multiple_data_points_now.json")
    assert (reading.sensor_id, reading.ts) == ("urn:dev:ow:10e2073a01080063", NOW)
    assert reading.values == {"voltage": 120.1, "current": 1.2} and reading.units == {"voltage": "V", "current": "A"}


def test_5_1_2_bver_5_pack_has_current_at_each_second_before_2010_06_08_18_01_16_001() -> None:
    readings = raw("rfc8428_5_1_2_multiple_data_points_bver5.json")
    assert [r.rejected for r in readings] == [None] * 6  # bver 5 is older than 10: understood
    assert {r.sensor_id for r in readings} == {"urn:dev:ow:10e2073a0108006"}
    end = parse_ts("2010-06-08T18:01:16.001Z")
    by_time = {r.ts: r for r in readings}
    assert sorted(by_time) == [end - k * 10**9 for k in range(5, -1, -1)]
    assert by_time[end].values == {"voltage": 120.1, "current": 1.7}
    assert by_time[end].units == {"voltage": "V", "current": "A"}  # u overrides bu; bu applies to the rest
    assert [by_time[end - k * 10**9].values["current"] for k in range(5, 0, -1)] == [1.2, 1.3, 1.4, 1.5, 1.6]


@pytest.mark.parametrize("name", ["rfc8428_5_1_2_multiple_data_points_now.json",
                                  "rfc8428_5_1_2_multiple_data_points_bver5.json"])
def test_5_1_2_electrical_values_on_an_air_topic_are_rejected_per_record_with_the_reason(name: str) -> None:
    result = decode("senml", spec(name), AIR)
    assert result.batch is None and result.errors
    assert all("unknown field" in e and ("'voltage'" in e or "'current'" in e) and "known: pm25" in e
               for e in result.errors)


HUMIDITY_513 = [  # (time, %RH, lat, lon) as RFC 8428 §5.1.3 lists them, from Mon Oct 31 13:24:24 UTC 2011
    (0, 20.0, 60.07965, 24.30621), (60, 20.3, 60.07965, 24.30622),
    (120, 20.7, 60.07966, 24.30623), (180, 21.2, 60.07967, 24.30628)]


@pytest.mark.parametrize("name", ["rfc8428_5_1_3_multiple_measurements.json", "rfc8428_5_1_4_resolved_data.json"])
def test_5_1_3_and_its_resolved_form_5_1_4_give_humidity_with_the_position_of_each_time(name: str) -> None:
    result = decode("senml", spec(name), AIR)
    start = parse_ts("2011-10-31T13:24:24Z")
    got = [(r.sensor_id, r.site, r.ts, r.values, r.lat, r.lon) for r in result.batch.readings()]
    assert got == [("urn:dev:ow:10e2073a01080063", "st-1", start + dt * 10**9, {"humidity": rh}, lat, lon)
                   for dt, rh, lat, lon in HUMIDITY_513]
    (battery,) = result.errors  # the %EL battery record at +150 s: no field of the air domain
    assert battery.startswith("record 9: ") and "'%EL'" in battery and "measures none" in battery


def test_5_1_5_string_boolean_and_data_values_are_each_rejected_with_their_kind() -> None:
    result = decode("senml", spec("rfc8428_5_1_5_multiple_data_types.json"), AIR)
    assert result.batch is None
    assert [e.split(":")[0] for e in result.errors] == ["record 0", "record 1", "record 2", "record 3"]
    temp, label, opened, reader = result.errors
    assert "unknown field 'temp'" in temp  # a name the domain does not know is never guessed from its unit
    assert "string (vs) value" in label and "unknown field 'open'" in opened and "data (vd) value" in reader


def test_5_1_6_collection_gives_each_device_its_own_reading_at_2011_10_31_16_27_09() -> None:
    result = decode("senml", spec("rfc8428_5_1_6_collection_of_resources.json"), AIR)
    assert result.errors == []
    at = parse_ts("2011-10-31T16:27:09Z")
    assert [(r.sensor_id, r.site, r.ts, r.values) for r in result.batch.readings()] == [
        ("2001:db8::2", "st-1", at, {"temperature": 25.2, "humidity": 30.0}),
        ("2001:db8::1", "st-1", at, {"temperature": 12.3, "humidity": 67.0})]


def test_5_1_7_actuator_settings_are_not_telemetry_and_are_rejected_record_by_record() -> None:
    result = decode("senml", spec("rfc8428_5_1_7_setting_an_actuator.json"), AIR)
    assert result.batch is None
    assert [e.split(":")[0] for e in result.errors] == ["record 1", "record 2", "record 3"]


@pytest.mark.parametrize("unit, value, expected", [("%RH", 40, 40.0), ("%", 0.4, 40.0), ("/", 0.4, 40.0)])
def test_percent_is_a_ratio_and_percent_rh_a_percentage(unit: str, value: float, expected: float) -> None:
    """RFC 8428 §12.1 Note 2: '%' "is NOT a percentage but the absolute ratio", like '/'."""
    pack = json.dumps([{"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1.320067464e+09,
                        "n": "humidity", "u": unit, "v": value}]).encode()
    result = decode("senml", pack, AIR)
    assert result.errors == [] and result.batch.readings()[0].values == {"humidity": pytest.approx(expected)}


# -- The Things Stack v3 -----------------------------------------------------------------------------

def test_tts_data_formats_uplink_with_the_operator_profile(docs_profiles: None) -> None:
    result = decode("ttn", spec("tts_data_formats_uplink_2020.json"), TTN_TOPIC)
    assert result.errors == []
    (reading,) = result.batch.readings()
    assert (reading.sensor_id, reading.domain, reading.site, reading.seq) == ("dev1", "air", "docs-site", 1)
    # no gateway GPS time: the Network Server's received_at, before the AS's and the gateway's clock
    assert reading.ts == parse_ts("2020-02-12T15:15:45.789585559Z")
    assert (reading.lat, reading.lon) == (37.97155556731436, 23.72678801175413)  # locations.user
    assert reading.values == {"temperature": 1.0}  # luminosity: not in the profile, ignored


def test_tts_data_formats_uplink_without_a_profile_is_rejected_naming_the_fix() -> None:
    result = decode("ttn", spec("tts_data_formats_uplink_2020.json"), TTN_TOPIC)
    assert result.batch is None and "no domain for sensor 'dev1'" in result.errors[0]
    assert "SMARTCITY_DEVICES" in result.errors[0]


def test_tts_current_data_formats_example_is_malformed_json_as_published(docs_profiles: None) -> None:
    text = spec("tts_data_formats_uplink_current.txt")
    with pytest.raises(PayloadError, match="malformed JSON: Expecting ',' delimiter at line 79 column 5"):
        parse("ttn", text, window=WINDOW)
    fixed = text.replace(b'    }\n    "received_at"', b'    },\n    "received_at"', 1)  # the one missing comma
    (reading,) = decode("ttn", fixed, TTN_TOPIC).batch.readings()
    (older,) = decode("ttn", spec("tts_data_formats_uplink_2020.json"), TTN_TOPIC).batch.readings()
    same = ("sensor_id", "domain", "site", "ts", "seq", "lat", "lon", "values")
    assert [getattr(reading, k) for k in same] == [getattr(older, k) for k in same]  # the additions change nothing


def test_tts_mqtt_server_uplink_without_decoded_payload_is_dead_lettered_with_the_fix(docs_profiles: None) -> None:
    with pytest.raises(PayloadError, match=r"no decoded payload: uplink_message.decoded_payload .*payload formatter"):
        parse("ttn", spec("tts_mqtt_server_uplink.json"), window=WINDOW)


def test_tts_mqtt_server_uplink_takes_the_gateway_time_and_f_cnt_0_when_decoded(docs_profiles: None) -> None:
    doc = json.loads(spec("tts_mqtt_server_uplink.json"))
    doc["uplink_message"]["decoded_payload"] = {"temperature": 0.0}  # what its frm_payload says
    (reading,) = decode("ttn", json.dumps(doc).encode(), TTN_TOPIC).batch.readings()
    assert reading.ts == parse_ts("2019-01-29T13:02:34.981Z")  # the only time it carries
    assert reading.seq == 0  # The Things Stack omits fields that are 0 (Data Formats note)
    assert (reading.sensor_id, reading.lat, reading.lon) == ("dev1", None, None)


def test_tts_simulated_uplink_is_rejected_never_counted(docs_profiles: None) -> None:
    """The Data Formats format lists `"simulated": true` for uplinks simulated rather than received."""
    doc = json.loads(spec("tts_data_formats_uplink_2020.json"))
    doc["simulated"] = True
    with pytest.raises(PayloadError, match=r"^simulated uplink .*never counted"):
        parse("ttn", json.dumps(doc).encode(), window=WINDOW)
    doc["simulated"] = False
    assert decode("ttn", json.dumps(doc).encode(), TTN_TOPIC).errors == []


# -- ChirpStack v4 -----------------------------------------------------------------------------------

def test_chirpstack_events_up_example_has_no_codec_object_and_is_dead_lettered_with_the_fix(docs_profiles: None) -> None:
    with pytest.raises(PayloadError, match=r"no decoded payload: object .*codec"):
        parse("chirpstack", spec("chirpstack_v4_event_up.json"), window=WINDOW)


def test_chirpstack_events_up_example_with_a_codec_object(docs_profiles: None) -> None:
    doc = json.loads(spec("chirpstack_v4_event_up.json"))
    doc["object"] = {"temperature": 21.5, "humidity": 40}
    result = decode("chirpstack", json.dumps(doc).encode(), CHIRPSTACK_TOPIC)
    assert result.errors == []
    (reading,) = result.batch.readings()
    assert (reading.sensor_id, reading.domain, reading.site) == ("0101010101010101", "air", "docs-site")
    assert reading.ts == parse_ts("2022-07-18T09:34:15.775023242Z")  # `time`: no GPS or NS time in rxInfo
    assert reading.seq == 0  # no fCnt: protobuf's JSON omits a 0
    assert reading.values == {"temperature": 21.5, "humidity": 40.0}


# -- beyond the examples: the same rules attacked ------------------------------------------------------

def senml_on_air(records: list[dict]) -> object:
    return decode("senml", json.dumps([{"bt": 1.320067464e+09, **records[0]}, *records[1:]]).encode(), AIR)


def test_a_device_name_whose_unit_measures_several_fields_is_rejected_saying_so() -> None:
    result = senml_on_air([{"n": "urn:dev:ow:10e2073a01080063", "u": "ug/m3", "v": 30}])
    assert result.batch is None and "measures several of the fields of domain air" in result.errors[0]


def test_a_device_name_without_a_unit_is_rejected_saying_so() -> None:
    result = senml_on_air([{"n": "urn:dev:ow:10e2073a01080063", "vb": True}])
    assert result.batch is None and "measures none of the fields" in result.errors[0]


def test_a_named_position_field_is_the_sensor_s_position_and_a_second_one_a_duplicate() -> None:
    result = senml_on_air([{"bn": "pm-1/", "n": "pm25", "u": "ug/m3", "v": 30},
                           {"n": "latitude", "u": "lat", "v": 36.1}, {"n": "lon", "u": "lon", "v": 120.5},
                           {"n": "lat", "u": "lat", "v": 36.2}])
    (reading,) = result.batch.readings()
    assert (reading.sensor_id, reading.lat, reading.lon, reading.values) == ("pm-1", 36.1, 120.5, {"pm25": 30.0})
    assert result.errors == ["record 3: duplicate lat of 'pm-1' at the same time"]


def test_a_position_alone_or_off_the_globe_is_rejected_not_stored() -> None:
    alone = senml_on_air([{"n": "urn:dev:ow:10e2073a01080063", "u": "lat", "v": 36.1}])
    assert alone.batch is None and alone.errors == ["reading 0: no values"]
    off = senml_on_air([{"bn": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 20}, {"u": "lat", "v": 91}])
    assert off.batch is None and "lat 91.0 is outside -90..90" in off.errors[0]
