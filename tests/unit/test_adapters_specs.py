"""Formats as their specs say: RFC 8428 (SenML), RFC 3339, The Things Stack v3 and ChirpStack v4 rules
(variations on their documentation examples; the verbatim ones are in test_spec_examples.py), and the
operator's device profiles."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from schemas.adapters import PayloadError, TopicInfo, parse, route
from schemas.batch import validate
from schemas.devices import DeviceProfileError, load_profiles, read_profiles
from schemas.timeparse import TimeWindow, parse_ts

SPECS = Path(__file__).parents[1] / "fixtures" / "specs"  # verbatim spec examples (its README: sources)
NOW = 1_790_000_000 * 10**9
WINDOW = TimeWindow(now_ns=NOW)


def decode(fmt: str, doc: object, topic: str | None = None, **options: object):
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    info = route(topic) if topic else TopicInfo(fmt)  # type: ignore[arg-type]
    return validate(parse(fmt, payload, info, window=WINDOW, **options), fmt, now_ns=NOW)  # type: ignore[arg-type]


# -- SenML, RFC 8428 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bver, accepted", [(1, True), (5, True), (10, True), (11, False), (99, False)])
def test_senml_rejects_only_a_version_newer_than_10(bver: int, accepted: bool) -> None:
    doc = [{"bn": "pm-1/", "bver": bver, "bt": 1_789_999_000, "n": "pm25", "v": 3}]
    if accepted:
        assert decode("senml", doc, "city/air/st/pm-1/senml").errors == []
    else:
        with pytest.raises(PayloadError, match=f"bver={bver} is newer than version 10"):
            parse("senml", json.dumps(doc).encode(), window=WINDOW)


@pytest.mark.parametrize("label", ["bx_", "x_", "_"])
def test_senml_rejects_a_pack_with_an_unknown_must_understand_label(label: str) -> None:
    doc = [{"bn": "pm-1/", "bt": 1_789_999_000, "n": "pm25", "v": 3}, {"n": "pm10", "v": 4, label: 1}]
    with pytest.raises(PayloadError, match=r"record 1: label .* ends in '_'.*RFC 8428 §4.4"):
        parse("senml", json.dumps(doc).encode(), window=WINDOW)


def test_senml_ignores_unknown_labels_without_underscore() -> None:
    doc = [{"bn": "pm-1/", "bt": 1_789_999_000, "n": "pm25", "v": 3, "foo": "bar"}]
    assert decode("senml", doc, "city/air/st/pm-1/senml").errors == []


def test_one_string_data_or_unknown_record_does_not_reject_the_numeric_readings_of_the_pack() -> None:
    doc = [{"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1_789_999_000, "n": "temperature", "u": "Cel", "v": 23.1},
           {"n": "label", "vs": "Machine Room"},
           {"n": "open", "vb": False},
           {"n": "nfc-reader", "vd": "aGkgCg"},
           {"n": "humidity", "u": "%RH", "v": 40}]
    result = decode("senml", doc, "city/air/st-1/gw-1/senml")
    (reading,) = result.batch.readings()
    assert reading.sensor_id == "urn:dev:ow:10e2073a01080063" and reading.site == "st-1"
    assert reading.values == {"temperature": 23.1, "humidity": 40.0}
    assert [e.split(":")[0] for e in result.errors] == ["record 1", "record 2", "record 3"]
    assert "string (vs) value" in result.errors[0] and "unknown field 'open'" in result.errors[1]
    assert "data (vd) value" in result.errors[2]


def test_a_gateway_pack_naming_two_sensors_gives_a_reading_for_each_on_the_topic_site() -> None:
    doc = [{"bn": "pm-1/", "bt": 1_789_999_000, "n": "pm25", "v": 30},
           {"bn": "pm-2/", "n": "pm25", "v": 31}]
    result = decode("senml", doc, "city/air/st-1/gateway-7/senml")
    assert result.errors == []
    assert [(r.sensor_id, r.site, r.values["pm25"]) for r in result.batch.readings()] == [
        ("pm-1", "st-1", 30.0), ("pm-2", "st-1", 31.0)]


def test_a_pack_naming_another_sensor_is_honoured_and_a_bare_name_takes_the_topic_sensor() -> None:
    named = decode("senml", [{"bn": "pm-9/", "bt": 1_789_999_000, "n": "pm25", "v": 3}], "city/air/st/pm-1/senml")
    bare = decode("senml", [{"bt": 1_789_999_000, "n": "pm25", "v": 3}], "city/air/st/pm-1/senml")
    assert named.batch.readings()[0].sensor_id == "pm-9"
    assert bare.batch.readings()[0].sensor_id == "pm-1"


def test_a_duplicate_field_rejects_that_record_only() -> None:
    doc = [{"bn": "pm-1/", "bt": 1_789_999_000, "n": "pm25", "v": 30}, {"n": "pm25", "v": 31}, {"n": "pm10", "v": 5}]
    result = decode("senml", doc, "city/air/st/pm-1/senml")
    assert result.batch.readings()[0].values == {"pm25": 30.0, "pm10": 5.0}
    assert result.errors == ["record 1: duplicate value for 'pm25' of 'pm-1' at the same time"]


@pytest.mark.parametrize("topic, field, unit, value, expected", [
    ("city/fire/z/cam-1/senml", "smoke", "/", 1, 1.0),
    ("city/garbage/c/bin-1/senml", "fill_level", "/", 0.4, 0.4),
    ("city/garbage/c/bin-1/senml", "fill_level", "%", 0.4, 0.4),  # '%' is a ratio like '/' (§12.1 Note 2)
    ("city/garbage/c/bin-1/senml", "fill_level", "%RH", 40, 0.4),
    ("city/air/st/pm-1/senml", "temperature", "Cel", 21.5, 21.5),
])
def test_senml_units_feed_flags_ratios_and_celsius(topic: str, field: str, unit: str, value: float, expected: float) -> None:
    result = decode("senml", [{"bn": "s/", "bt": 1_789_999_000, "n": field, "u": unit, "v": value}], topic)
    assert result.errors == [] and result.batch.readings()[0].values[field] == pytest.approx(expected)


def test_senml_unit_C_is_the_coulomb_never_degrees_celsius() -> None:
    result = decode("senml", [{"bn": "s/", "bt": 1_789_999_000, "n": "temperature", "u": "C", "v": 21}],
                    "city/air/st/s/senml")
    assert result.batch is None and "'C' is the coulomb" in result.errors[0] and "'Cel'" in result.errors[0]


# -- RFC 3339 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ns", [
    ("2026-05-01T00:00:00Z", 1_777_593_600 * 10**9),
    ("2026-05-01t00:00:00z", 1_777_593_600 * 10**9),
    ("2026-05-01T08:00:00+08:00", 1_777_593_600 * 10**9),
    ("2026-05-01T00:00:00-00:00", 1_777_593_600 * 10**9),
    ("2026-05-01T00:00:00.5Z", 1_777_593_600_500_000_000),
    ("2026-05-01T00:00:00.123456789987654321Z", 1_777_593_600_123_456_789),
    ("2016-12-31T23:59:60Z", 1_483_228_800 * 10**9),
])
def test_rfc3339_accepts_what_the_rfc_allows(text: str, ns: int) -> None:
    assert parse_ts(text, WINDOW.bounds()) == ns


# -- The Things Stack v3 -----------------------------------------------------------------------------

def ttn_uplink() -> dict:
    """The Data Formats page's uplink, verbatim (tests/fixtures/specs), for our air profile's application,
    with a payload its formatter decodes and a gateway GPS time: the fields these tests vary."""
    doc = json.loads((SPECS / "tts_data_formats_uplink_2020.json").read_text())
    doc["end_device_ids"]["application_ids"]["application_id"] = "laoshan-air-lora"
    doc["uplink_message"]["decoded_payload"] = {"pm2_5": 35.5, "temp": 21}
    doc["uplink_message"]["rx_metadata"][0]["gps_time"] = "2020-02-12T15:15:45.786Z"
    return doc


def test_ttn_uplink_takes_gps_time_location_and_counter() -> None:
    (reading,) = decode("ttn", ttn_uplink()).batch.readings()
    assert reading.ts == parse_ts("2020-02-12T15:15:45.786Z")
    assert (reading.sensor_id, reading.domain, reading.seq) == ("dev1", "air", 1)
    assert (reading.lat, reading.lon) == (37.97155556731436, 23.72678801175413)
    assert reading.values == {"pm25": 35.5, "temperature": 21.0}


def test_ttn_a_gateway_clock_in_the_future_does_not_reject_a_good_uplink() -> None:
    doc = ttn_uplink()
    meta = doc["uplink_message"]["rx_metadata"]
    del meta[0]["gps_time"]
    meta[0]["time"] = "2031-01-01T00:00:00Z"
    meta.insert(0, {"gateway_ids": {"gateway_id": "gtw0"}, "time": "1980-01-06T00:00:00Z"})
    (reading,) = decode("ttn", doc).batch.readings()
    assert reading.ts == parse_ts("2020-02-12T15:15:45.789585559Z")  # the network server's received_at


def test_ttn_gateway_time_is_the_last_resort() -> None:
    doc = ttn_uplink()
    del doc["uplink_message"]["rx_metadata"][0]["gps_time"], doc["uplink_message"]["received_at"], doc["received_at"]
    (reading,) = decode("ttn", doc).batch.readings()
    assert reading.ts == parse_ts("2020-02-12T15:15:45.787Z")


def test_ttn_uplink_without_any_time_is_rejected_naming_where_it_looked() -> None:
    doc = ttn_uplink()
    del doc["uplink_message"]["rx_metadata"], doc["uplink_message"]["received_at"], doc["received_at"]
    with pytest.raises(PayloadError, match="missing timestamp: none of uplink_message.received_at, received_at"):
        parse("ttn", json.dumps(doc).encode(), window=WINDOW)


def test_string_numbers_are_accepted_only_where_the_profile_says_so(tmp_path: Path) -> None:
    doc = ttn_uplink()
    doc["uplink_message"]["decoded_payload"] = {"pm2_5": "35.5", "temp": " 21 "}
    refused = decode("ttn", doc)
    assert refused.batch is None and "numbers_as_strings = true" in refused.errors[0]
    operator = tmp_path / "devices.toml"
    operator.write_text('[profiles.laoshan-air-lora]\ndomain = "air"\nsite = "lora-air"\nnumbers_as_strings = true\n'
                        'fields = { pm2_5 = "pm25", temp = "temperature" }\n')
    profiles = read_profiles(operator)
    assert decode("ttn", doc, profiles=profiles).batch.readings()[0].values == {"pm25": 35.5, "temperature": 21.0}
    doc["uplink_message"]["decoded_payload"] = {"pm2_5": "nan"}
    (refused,) = decode("ttn", doc, profiles=profiles).errors
    assert "is the string 'nan', not a decimal number" in refused and "numbers_as_strings = true" not in refused


# -- ChirpStack v4 -----------------------------------------------------------------------------------

def chirpstack_up() -> dict:
    """The Event types page's `up` event, verbatim (tests/fixtures/specs), for our fire-weather device
    profile and with the codec object it lacks: the fields these tests vary."""
    doc = json.loads((SPECS / "chirpstack_v4_event_up.json").read_text())
    doc["deviceInfo"]["deviceProfileName"] = "laoshan-fire-weather"
    doc["object"] = {"air_temp": 21.4, "rh": 28, "latitude": 36.2, "longitude": 120.6}
    return doc


def test_chirpstack_up_event_takes_time_profile_site_and_location() -> None:
    (reading,) = decode("chirpstack", chirpstack_up()).batch.readings()
    assert reading.ts == parse_ts("2022-07-18T09:34:15.775023242Z")
    assert (reading.sensor_id, reading.domain, reading.site, reading.seq) == ("0101010101010101", "fire", "lora-fire", 0)
    assert (reading.lat, reading.lon) == (36.2, 120.6)
    assert reading.values == {"temperature": 21.4, "humidity": 28.0}


def test_chirpstack_gps_time_first_and_a_wrong_gateway_clock_last() -> None:
    doc = chirpstack_up()
    doc["rxInfo"][0]["gwTime"] = "2031-01-01T00:00:00Z"
    assert decode("chirpstack", doc).batch.readings()[0].ts == parse_ts("2022-07-18T09:34:15.775023242Z")
    gps = (parse_ts("2022-07-18T09:34:14Z") - 315_964_800 * 10**9) // 10**9 + 18
    doc["rxInfo"][0]["timeSinceGpsEpoch"] = f"{gps}.5s"
    assert decode("chirpstack", doc).batch.readings()[0].ts == parse_ts("2022-07-18T09:34:14.5Z")
    del doc["rxInfo"][0]["timeSinceGpsEpoch"]
    doc["time"] = "2031-01-01T00:00:00Z"  # ChirpStack copies the first gateway clock into `time`
    doc["rxInfo"][0]["nsTime"] = "2022-07-18T09:34:15.8Z"
    assert decode("chirpstack", doc).batch.readings()[0].ts == parse_ts("2022-07-18T09:34:15.8Z")


def test_chirpstack_event_without_codec_object_is_rejected_not_dropped() -> None:
    doc = chirpstack_up()
    del doc["object"]
    with pytest.raises(PayloadError, match="no decoded payload"):
        parse("chirpstack", json.dumps(doc).encode(), window=WINDOW)


# -- device profiles ---------------------------------------------------------------------------------

def test_operator_profiles_from_smartcity_devices_add_to_the_shipped_ones(tmp_path: Path, monkeypatch) -> None:
    operator = tmp_path / "devices.toml"
    operator.write_text('[profiles.my-bins]\ndomain = "garbage"\nsite = "depot"\nfields = { level = "fill_level" }\n')
    monkeypatch.setenv("SMARTCITY_DEVICES", str(operator))
    profiles = load_profiles()
    assert "my-bins" in profiles.profiles and "laoshan-air-lora" in profiles.profiles


@pytest.mark.parametrize("text, line, fix", [
    ('[profiles.a]\ndomain = "air"\nfields = { pm2_5 = "pm2.5" }\n', 3, "use one of: pm25"),
    ('[profiles.a]\ndomain = "air"\n\n[profiles.a.fields]\npm = { field = "pm25", scael = 2 }\n', 5, "check its spelling"),
    ('[profiles.a]\ndomain = "weather"\nfields = {}\n', 1, "use one of: "),
    ('[profiles.a]\ndomain = "air"\nfields = { pm = "pm25" \n', 3, "fix the syntax"),
])
def test_an_invalid_profile_file_names_the_file_the_line_and_the_fix(tmp_path: Path, text: str, line: int, fix: str) -> None:
    bad = tmp_path / "ops-devices.toml"
    bad.write_text(text)
    with pytest.raises(DeviceProfileError) as exc:
        read_profiles(bad)
    message = str(exc.value)
    assert str(bad) in message and fix in message
    assert f"line {line}" in message


def test_the_bridge_refuses_to_start_with_an_invalid_profile_file(tmp_path: Path, monkeypatch) -> None:
    from smartcity.cli import app

    bad = tmp_path / "devices.toml"
    bad.write_text('[profiles.a]\ndomain = "air"\nfields = { pm2_5 = "pm2.5" }\n')
    monkeypatch.setenv("SMARTCITY_DEVICES", str(bad))
    result = CliRunner().invoke(app, ["bridge", "--metrics-port", "0"])
    assert result.exit_code == 2 and "refusing to start" in result.stderr and f"{bad}, line 3" in result.stderr
