"""Adversarial payloads up to the broker's size limit, in every format and device profile (issue 22).

Each family stretches one part of a message that a decoder step reads (a device field's string, a
time, a SenML name or unit, the number of records or gateways) to `size` bytes, so that a step that is
not linear in the payload shows as seconds instead of milliseconds. `tests/unit/test_adapters_edge.py`
bounds each one; `python -m bench adversarial` reports the time per KiB.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Iterator

from schemas.adapters import PayloadError, parse, route
from schemas.batch import validate
from schemas.devices import DEFAULT_FILE, DeviceProfiles, read_profiles
from schemas.registry import domains
from schemas.timeparse import TimeWindow

BROKER_LIMIT = 256 * 1024   # bytes: Mosquitto's message_size_limit in deploy/ (DESIGN.md, MQTT)
NOW_NS = 1_790_000_000 * 10**9
WINDOW = TimeWindow(now_ns=NOW_NS)
_T = "2026-09-21T12:00:00Z"


@dataclass(frozen=True)
class Payload:
    """One adversarial message: what it stretches, its format, topic and bytes."""

    name: str
    fmt: str
    topic: str
    body: bytes


def profiles() -> DeviceProfiles:
    """The shipped device profiles, each also as a copy that reads numbers written as strings."""
    shipped = read_profiles(DEFAULT_FILE).profiles
    strings = {f"{n}-strings": p.model_copy(update={"numbers_as_strings": True}) for n, p in shipped.items()}
    return DeviceProfiles(profiles={**shipped, **strings})


def _fill(template: str, size: int, unit: str) -> str:
    """`template` with its `@` replaced by `unit` repeated so that the whole is about `size` bytes."""
    return template.replace("@", unit * max(1, (size - len(template)) // len(unit)))


def payloads(size: int = BROKER_LIMIT) -> Iterator[Payload]:
    """Every family, for every domain (native, SenML) and every device profile (TTN, ChirpStack)."""
    for dom in domains().values():
        field = dom.fields[0]
        up, senml = f"city/{dom.name}/st-1/s-1/up", f"city/{dom.name}/st-1/s-1/senml"
        for what, text in (("digits", "1"), ("spaces", " "), ("decimal", "1.")):
            yield Payload(f"native {dom.name} value {what}", "native", up,
                          _fill(json.dumps({"ts": _T, "values": {field: "@x"}}), size, text).encode())
        yield Payload(f"native {dom.name} ts fraction", "native", up,
                      _fill(json.dumps({"ts": "2026-09-21T12:00:00.@+08:0", "values": {field: 1}}), size, "1").encode())
        yield Payload(f"native {dom.name} ts spaces", "native", up,
                      _fill(json.dumps({"ts": "@" + _T, "values": {field: 1}}), size, " ").encode())
        yield Payload(f"native {dom.name} sensor id", "native", up.replace("s-1", _fill("s-@", size - 100, "a")),
                      json.dumps({"ts": _T, "values": {field: 1}}).encode())
        reading = json.dumps({"ts": _T, "values": {f: True for f in dom.fields}})
        yield Payload(f"native {dom.name} many readings of booleans", "native", up,
                      ("[" + ",".join([reading] * (size // (len(reading) + 1))) + "]").encode())
        for what, record in (("name", {"bn": "s-1/", "bt": 1.79e9, "n": "@", "v": 1}),
                             ("unit", {"bn": "s-1/", "bt": 1.79e9, "n": field, "u": "@", "v": 1}),
                             ("base name", {"bn": "@/", "bt": 1.79e9, "n": field, "v": 1}),
                             ("unknown label", {"bn": "s-1/", "bt": 1.79e9, "@": 1})):
            yield Payload(f"senml {dom.name} {what}", "senml", senml, _fill(json.dumps([record]), size, "a").encode())
        rec = json.dumps({"n": field, "t": -1, "vb": True})
        yield Payload(f"senml {dom.name} many records", "senml", senml, (
            '[{"bn":"s-1/","bt":1.79e9},' + ",".join([rec] * (size // (len(rec) + 1))) + "]").encode())
    for name, profile in profiles().profiles.items():
        fields = list(profile.fields)
        for what, text in (("digits", "1"), ("spaces", " "), ("decimal", "1.")):
            decoded = {f: "@x" if k == 0 else 1 for k, f in enumerate(fields)}
            yield _ttn(f"ttn {name} field {what}", name, _fill(json.dumps(decoded), size - 400, text), [])
            yield _chirpstack(f"chirpstack {name} field {what}", name, _fill(json.dumps(decoded), size - 400, text), [])
        decoded = json.dumps({fields[0]: 1})
        gateway = {"gateway_ids": {"gateway_id": "g"}, "time": _T, "gps_time": "2007-02-05T12:00:00Z"}
        many = size // (len(json.dumps(gateway)) + 1)
        stamps = [f"2026-09-21T{h:02d}:{m:02d}:00Z" for h in range(12) for m in range(60)]
        votes = [{**gateway, "time": stamps[i % len(stamps)]} for i in range(many)]
        yield _ttn(f"ttn {name} many disagreeing gateways", name, decoded, votes, network=False)
        yield _ttn(f"ttn {name} many gateways", name, decoded, votes)
        rx = {"gatewayId": "g", "gwTime": _T}
        yield _chirpstack(f"chirpstack {name} many disagreeing gateways", name, decoded,
                          [{**rx, "gwTime": stamps[i % len(stamps)]} for i in range(size // (len(json.dumps(rx)) + 2))],
                          network=False)
        yield _ttn(f"ttn {name} received_at fraction", name, decoded, [],
                   received=_fill("2026-09-21T12:00:00.@Z", size - 400, "1"))


def _ttn(name: str, app: str, decoded: str, gateways: list, network: bool = True, received: str = _T) -> Payload:
    up = {"f_cnt": 1, "decoded_payload": "@D", "rx_metadata": gateways, **({"received_at": received} if network else {})}
    doc = json.dumps({"end_device_ids": {"device_id": "d-1", "application_ids": {"application_id": app}},
                      "uplink_message": up})
    return Payload(name, "ttn", "v3/a@ttn/devices/d-1/up", doc.replace('"@D"', decoded).encode())


def _chirpstack(name: str, profile: str, decoded: str, gateways: list, network: bool = True) -> Payload:
    doc = json.dumps({"deviceInfo": {"deviceProfileName": profile, "devEui": "0101010101010101"},
                      "fCnt": 1, "object": "@D", "rxInfo": gateways, **({"time": _T} if network else {})})
    return Payload(name, "chirpstack", "application/a/device/0101010101010101/event/up",
                   doc.replace('"@D"', decoded).encode())


def decode_seconds(payload: Payload, devices: DeviceProfiles) -> tuple[float, str]:
    """Seconds to decode and validate one payload as `smartcity decode` does, and its outcome
    ('accepted', or the first reason); any exception but PayloadError propagates (it is a bug)."""
    started = time.perf_counter()
    try:
        info = route(payload.topic)
        result = validate(parse(payload.fmt, payload.body, info, window=WINDOW, profiles=devices),  # type: ignore[arg-type]
                          payload.fmt, now_ns=NOW_NS)  # type: ignore[arg-type]
        outcome = result.errors[0] if result.errors else "accepted"
    except PayloadError as exc:
        outcome = exc.reason
    return time.perf_counter() - started, outcome
