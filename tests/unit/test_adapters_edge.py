"""Issue 22's two classes tests: decoding is linear in the payload (adversarial payloads up to the
broker's 256 KiB limit, every format and device profile, each under a bound a quadratic path cannot
meet), and a value that is not a number is refused as such in every field of every domain, in every
format, whatever its JSON type (a boolean feeds a flag field only, as its 1/0; a decimal string only a
profile that says `numbers_as_strings = true`)."""
from __future__ import annotations

import json

import pytest

from bench.adversarial import BROKER_LIMIT, Payload, decode_seconds, payloads, profiles
from schemas.adapters import PayloadError, parse, route
from schemas.batch import validate
from schemas.devices import DeviceProfile, DeviceProfiles, FieldMap
from schemas.registry import domains
from schemas.timeparse import TimeWindow

PAYLOADS = list(payloads(BROKER_LIMIT))
DEVICES = profiles()
BOUND_S = 2.0  # for 256 KiB; the backtracking regex of issue 22 took 53.6 s on 40,000 characters


def test_the_adversarial_families_reach_the_broker_limit_in_every_format_and_profile() -> None:
    assert {p.fmt for p in PAYLOADS} == {"native", "senml", "ttn", "chirpstack"}
    assert all(BROKER_LIMIT * 0.95 < len(p.topic) + len(p.body) <= BROKER_LIMIT * 1.05 for p in PAYLOADS)
    named = " ".join(p.name for p in PAYLOADS)
    assert all(f" {name} " in named for name in DEVICES.profiles) and all(f" {d} " in named for d in domains())


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_a_256_kib_adversarial_payload_is_decoded_in_linear_time(payload: Payload) -> None:
    seconds, outcome = decode_seconds(payload, DEVICES)
    assert seconds < BOUND_S, f"{payload.name}: {seconds:.1f} s for {len(payload.body)} bytes ({outcome[:100]})"
    assert len(outcome) < 2000  # a reason names the offending value in a few characters, never all of it


# -- not a number, whatever its JSON type --------------------------------------------------------------

NOT_NUMBERS = {"boolean": True, "string": "1", "null": None, "object": {"value": 1}}
NOW_NS = 1_790_000_000 * 10**9
WINDOW = TimeWindow(now_ns=NOW_NS)
T = "2026-09-21T12:00:00Z"
FIELDS = [(d.name, f) for d in domains().values() for f in d.fields]


def _every_field_profiles() -> DeviceProfiles:
    """Per domain: one profile renaming each field to itself, one scaling it (a rule), one that reads
    numbers written as strings: every way a device field reaches a domain field."""
    out = {}
    for dom in domains().values():
        out[f"{dom.name}-rename"] = DeviceProfile(domain=dom.name, site="s", fields={f: f for f in dom.fields})
        out[f"{dom.name}-rule"] = DeviceProfile(domain=dom.name, site="s",
                                                fields={f: FieldMap(field=f, scale=1.0) for f in dom.fields})
        out[f"{dom.name}-strings"] = DeviceProfile(domain=dom.name, site="s", numbers_as_strings=True,
                                                   fields={f: f for f in dom.fields})
    return DeviceProfiles(profiles=out)


EVERY_FIELD = _every_field_profiles()


def _outcome(fmt: str, topic: str, body: dict | list) -> tuple[list[str], list[dict]]:
    """(reasons, accepted values) of one message, decoded as the bridge does."""
    try:
        raws = parse(fmt, json.dumps(body).encode(), route(topic), window=WINDOW, profiles=EVERY_FIELD)  # type: ignore[arg-type]
    except PayloadError as exc:
        return [exc.reason], []
    result = validate(raws, fmt, now_ns=NOW_NS)  # type: ignore[arg-type]
    return result.errors, [r.values for r in result.batch.readings()] if result.batch else []


def _messages(domain: str, field: str, value: object) -> list[tuple[str, str, str, dict | list]]:
    """(way, format, topic, message) carrying `value` in `field` of `domain`, in every format and way."""
    out: list[tuple[str, str, str, dict | list]] = [
        ("native", "native", f"city/{domain}/s/p/up", {"ts": T, "values": {field: value}}),
        ("senml v", "senml", f"city/{domain}/s/p/senml", [{"bn": "p/", "bt": 1.79e9, "n": field, "v": value}]),
        ("senml vb", "senml", f"city/{domain}/s/p/senml", [{"bn": "p/", "bt": 1.79e9, "n": field, "vb": value}]),
    ]
    for way in ("rename", "rule", "strings"):
        out.append((f"ttn {way}", "ttn", "v3/a@ttn/devices/d/up", {
            "end_device_ids": {"device_id": "d", "application_ids": {"application_id": f"{domain}-{way}"}},
            "uplink_message": {"received_at": T, "decoded_payload": {field: value}}}))
        out.append((f"chirpstack {way}", "chirpstack", "application/a/device/0101/event/up", {
            "deviceInfo": {"devEui": "0101", "deviceProfileName": f"{domain}-{way}"}, "time": T,
            "object": {field: value}}))
    return out


@pytest.mark.parametrize("kind", NOT_NUMBERS)
@pytest.mark.parametrize("domain, field", FIELDS)
def test_a_value_that_is_not_a_number_is_refused_in_every_field_format_and_profile(domain: str, field: str,
                                                                                     kind: str) -> None:
    flag = domains()[domain].unit(field) == "bool"
    for way, fmt, topic, message in _messages(domain, field, NOT_NUMBERS[kind]):
        reasons, accepted = _outcome(fmt, topic, message)
        if kind == "boolean" and flag and way != "senml v" and not way.endswith("rule"):
            assert accepted == [{field: 1.0}] and not reasons, f"{way}: a flag takes true as 1: {reasons}"
            continue
        if kind == "string" and way.endswith("strings"):  # the profile says its formatter writes "1" for 1
            assert accepted == [{field: 1.0}] and not reasons, f"{way}: {reasons}"
            continue
        assert not accepted and len(reasons) == 1, f"{way}: {kind} {NOT_NUMBERS[kind]!r} into {domain}.{field}"
        assert field in reasons[0] or "vb must be a boolean" in reasons[0], f"{way}: {reasons[0]}"
        if kind == "boolean" and way != "senml vb":
            assert "boolean" in reasons[0], f"{way}: {reasons[0]}"


@pytest.mark.parametrize("domain, field", [(d, f) for d, f in FIELDS if domains()[d].unit(f) == "bool"])
def test_false_into_a_flag_field_is_0_in_every_format(domain: str, field: str) -> None:
    for way, fmt, topic, message in _messages(domain, field, False):
        if way == "senml v" or way.endswith("rule"):
            continue  # SenML's v is a number; a scale rule needs one
        assert _outcome(fmt, topic, message) == ([], [{field: 0.0}]), way
