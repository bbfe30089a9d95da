"""Payload adapters: raw MQTT bytes in one of four formats -> format-neutral `RawReading`s.

Native JSON, SenML (RFC 8428), The Things Stack v3 uplinks and ChirpStack v4 `up` events. Parsing
never lets an exception escape: a message-level problem raises `PayloadError` with a precise reason.
Domain validation happens afterwards, for all formats alike, in `schemas.batch`.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from schemas.devices import DeviceProfiles, load_profiles
from schemas.envelope import Source
from schemas.timeparse import parse_ts

FORMATS: tuple[Source, ...] = ("native", "senml", "ttn", "chirpstack")
MAX_PAYLOAD = 16 * 1024 * 1024
SENML_RELATIVE_LIMIT = 2**28  # RFC 8428 4.5.3: smaller times are relative to now


class PayloadError(ValueError):
    """A message that cannot be decoded; `reason` is what goes into the dead-letter record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class RawReading:
    """What a format carried, before domain validation (`smartcity decode --raw` prints this)."""

    sensor_id: str | None
    ts: int | None
    values: dict[str, Any]
    units: dict[str, str] = field(default_factory=dict)
    domain: str | None = None
    site: str | None = None
    seq: int | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class TopicInfo:
    """What an MQTT topic tells: the payload format and, for city/ topics, domain, site and sensor."""

    format: Source | Literal["status"]
    domain: str | None = None
    site: str | None = None
    sensor_id: str | None = None


_CITY = re.compile(r"^city/([^/]+)/([^/]+)/([^/]+)/(up|senml|status)$")
_TTN = re.compile(r"^v3/[^/]+/devices/[^/]+/up$")
_CHIRPSTACK = re.compile(r"^application/[^/]+/device/[^/]+/event/up$")


def route(topic: str) -> TopicInfo:
    """The format and identity a topic carries (DESIGN.md, MQTT topics); PayloadError if unknown."""
    if m := _CITY.match(topic):
        kind = {"up": "native", "senml": "senml", "status": "status"}[m.group(4)]
        return TopicInfo(kind, m.group(1), m.group(2), m.group(3))  # type: ignore[arg-type]
    if _TTN.match(topic):
        return TopicInfo("ttn")
    if _CHIRPSTACK.match(topic):
        return TopicInfo("chirpstack")
    raise PayloadError(f"topic {topic!r} matches no source (city/<domain>/<site>/<sensor>/up|senml, "
                       "v3/+/devices/+/up, application/+/device/+/event/up)")


def load_json(payload: bytes) -> Any:
    """JSON from bytes, with the reason spelled out for non-UTF-8, oversize or malformed input."""
    if len(payload) > MAX_PAYLOAD:
        raise PayloadError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"payload is not UTF-8: byte {exc.start} is 0x{payload[exc.start]:02x}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PayloadError("malformed JSON: nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"malformed JSON: {name} is not a number JSON allows")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _time(value: Any, where: str) -> int:
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise PayloadError(f"{where}: {exc}") from None


def _opt_number(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PayloadError(f"{where}: {key} must be a number, got {value!r}")
    return value


def _opt_seq(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{where}: {key} must be a non-negative integer, got {value!r}")
    return value


# -- native -------------------------------------------------------------------------------------

def parse_native(payload: bytes, topic: TopicInfo | None = None) -> list[RawReading]:
    """Native JSON: an object or an array of objects {ts, values{...}, [seq, lat, lon, sensor_id, site]}."""
    doc = load_json(payload)
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise PayloadError("empty array: no readings")
    out = []
    for i, item in enumerate(items):
        where = f"reading {i}" if isinstance(doc, list) else "reading"
        item = _obj(item, where)
        if "ts" not in item:
            raise PayloadError(f"{where}: missing ts (RFC 3339 string or epoch seconds)")
        values = _obj(item.get("values"), f"{where}: values")
        out.append(RawReading(
            sensor_id=_ident(item, "sensor_id", topic.sensor_id if topic else None, where),
            site=_ident(item, "site", topic.site if topic else None, where),
            domain=topic.domain if topic else None,
            ts=_time(item["ts"], where),
            values=values,
            seq=_opt_seq(item, "seq", where),
            lat=_opt_number(item, "lat", where),
            lon=_opt_number(item, "lon", where),
        ))
    return out


def _ident(item: dict[str, Any], key: str, from_topic: str | None, where: str) -> str | None:
    value = item.get(key)
    if value is None:
        return from_topic
    if not isinstance(value, str):
        raise PayloadError(f"{where}: {key} must be a string, got {value!r}")
    if from_topic is not None and value != from_topic:
        raise PayloadError(f"{where}: {key} {value!r} contradicts the topic's {from_topic!r}")
    return value


# -- SenML ----------------------------------------------------------------------------------------

def parse_senml(payload: bytes, topic: TopicInfo | None = None, *, now_ns: int | None = None) -> list[RawReading]:
    """SenML JSON pack (RFC 8428): base name/time/unit resolved; records grouped by (sensor, time).

    The resolved name is `<sensor>/<field>` or `<sensor>:<field>` (split at the last separator); on a
    `city/<domain>/<site>/<sensor>/senml` topic the sensor comes from the topic and the last name
    segment is the field.
    """
    doc = load_json(payload)
    if not isinstance(doc, list) or not doc:
        raise PayloadError(f"a SenML pack must be a non-empty JSON array, got {_kind(doc) if doc != [] else 'an empty array'}")
    now = (now_ns or time.time_ns()) / 1e9
    bn, bt, bu, bv = "", 0.0, None, 0.0
    groups: dict[tuple[str, float], RawReading] = {}
    for i, rec in enumerate(doc):
        where = f"record {i}"
        rec = _obj(rec, where)
        if "bver" in rec and rec["bver"] not in (10,):
            raise PayloadError(f"{where}: unsupported SenML version bver={rec['bver']!r}")
        if "bn" in rec:
            bn = _str(rec, "bn", where)
        if "bt" in rec:
            bt = _num(rec, "bt", where)
        if "bu" in rec:
            bu = _str(rec, "bu", where)
        if "bv" in rec:
            bv = _num(rec, "bv", where)
        name = bn + (_str(rec, "n", where) if "n" in rec else "")
        if not name:
            raise PayloadError(f"{where}: no name (neither bn nor n)")
        if "v" in rec:
            value: Any = bv + _num(rec, "v", where)
        elif "vb" in rec:
            if not isinstance(rec["vb"], bool):
                raise PayloadError(f"{where}: vb must be a boolean, got {rec['vb']!r}")
            value = 1.0 if rec["vb"] else 0.0
        elif "vs" in rec or "vd" in rec:
            raise PayloadError(f"{where}: string/data values are not numeric readings ({name})")
        elif "s" in rec:
            continue  # a sum-only record carries no instantaneous reading
        else:
            if set(rec) <= {"bn", "bt", "bu", "bv", "bver"}:
                continue  # a base-only record
            raise PayloadError(f"{where}: no value (v, vb)")
        t = bt + (_num(rec, "t", where) if "t" in rec else 0.0)
        if t < SENML_RELATIVE_LIMIT:
            t += now
        sensor, fieldname = _split_name(name, topic)
        if not fieldname:
            raise PayloadError(f"{where}: name {name!r} has no field part (<sensor>/<field>)")
        unit = rec.get("u", bu)
        key = (sensor or "", t)
        reading = groups.get(key)
        if reading is None:
            reading = groups[key] = RawReading(
                sensor_id=sensor, ts=_time(t, where), values={},
                domain=topic.domain if topic else None, site=topic.site if topic else None)
        if fieldname in reading.values:
            raise PayloadError(f"{where}: duplicate value for {fieldname!r} of {sensor!r} at the same time")
        reading.values[fieldname] = value
        if unit is not None:
            reading.units[fieldname] = str(unit)
    if not groups:
        raise PayloadError("the SenML pack has no value records")
    return list(groups.values())


def _split_name(name: str, topic: TopicInfo | None) -> tuple[str | None, str]:
    cut = max(name.rfind("/"), name.rfind(":"))
    sensor, fieldname = (name[:cut], name[cut + 1:]) if cut >= 0 else (None, name)
    if topic and topic.sensor_id:
        sensor = topic.sensor_id
    return sensor, fieldname


def _str(rec: dict[str, Any], key: str, where: str) -> str:
    if not isinstance(rec[key], str):
        raise PayloadError(f"{where}: {key} must be a string, got {rec[key]!r}")
    return rec[key]


def _num(rec: dict[str, Any], key: str, where: str) -> float:
    value = rec[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PayloadError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


# -- LoRaWAN network servers ----------------------------------------------------------------------

def parse_ttn(payload: bytes, topic: TopicInfo | None = None, *,
              profiles: DeviceProfiles | None = None) -> list[RawReading]:
    """The Things Stack v3 uplink: device ids, `uplink_message.decoded_payload`, gateway/NS times."""
    doc = _obj(load_json(payload), "a TTN uplink")
    ids = _obj(doc.get("end_device_ids"), "end_device_ids")
    device = _device_id(ids, "device_id", "end_device_ids")
    app = _obj(ids.get("application_ids"), "end_device_ids.application_ids").get("application_id")
    up = _obj(doc.get("uplink_message"), "uplink_message")
    decoded = _decoded(up, "decoded_payload", "uplink_message.decoded_payload")
    # Event time: a gateway's GPS time when present, else the network server's, else the message's.
    gw_times = [m.get("time") for m in up.get("rx_metadata") or [] if isinstance(m, dict) and m.get("time")]
    stamp = gw_times[0] if gw_times else up.get("received_at") or doc.get("received_at")
    if stamp is None:
        raise PayloadError("missing timestamp: no rx_metadata[].time, uplink_message.received_at or received_at")
    profile_name = app if isinstance(app, str) else ""
    location = (up.get("locations") or {}).get("user") if isinstance(up.get("locations"), dict) else None
    return [_lorawan_reading(
        profiles, profile_name, device, None, _time(stamp, "uplink time"), decoded,
        _opt_seq(up, "f_cnt", "uplink_message"),
        location if isinstance(location, dict) else {},
    )]


def parse_chirpstack(payload: bytes, topic: TopicInfo | None = None, *,
                     profiles: DeviceProfiles | None = None) -> list[RawReading]:
    """ChirpStack v4 `up` event: `deviceInfo`, `object` (codec output), `time`, `fCnt`."""
    doc = _obj(load_json(payload), "a ChirpStack up event")
    info = _obj(doc.get("deviceInfo"), "deviceInfo")
    dev_eui = _device_id(info, "devEui", "deviceInfo")
    decoded = _decoded(doc, "object", "object")
    stamp = doc.get("time")
    if stamp is None:
        rx = [m.get("gwTime") for m in doc.get("rxInfo") or [] if isinstance(m, dict) and m.get("gwTime")]
        stamp = rx[0] if rx else None
    if stamp is None:
        raise PayloadError("missing timestamp: no time or rxInfo[].gwTime")
    tags = info.get("tags") if isinstance(info.get("tags"), dict) else {}
    profile_name = info.get("deviceProfileName") if isinstance(info.get("deviceProfileName"), str) else ""
    return [_lorawan_reading(profiles, profile_name, dev_eui.lower(), tags.get("site"),
                             _time(stamp, "time"), decoded, _opt_seq(doc, "fCnt", "event"), {})]


def _device_id(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where}.{key} is missing")
    return value


def _decoded(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """The network server's decoded values; without them the message is dead-lettered, never dropped."""
    decoded = obj.get(key)
    if not decoded:
        raise PayloadError("no decoded payload")
    return _obj(decoded, where)


def _lorawan_reading(profiles: DeviceProfiles | None, profile_name: str, device: str, site: Any,
                     ts: int, decoded: dict[str, Any], seq: int | None,
                     location: dict[str, Any]) -> RawReading:
    profiles = profiles or load_profiles()
    profile = profiles.profiles.get(profile_name)
    if profile is None:
        return RawReading(sensor_id=device, ts=ts, values=dict(decoded), site=site if isinstance(site, str) else None,
                          seq=seq, domain=None)
    return RawReading(
        sensor_id=device, ts=ts, values=profile.map_values(decoded), domain=profile.domain,
        site=site if isinstance(site, str) else profile.site, seq=seq,
        lat=_opt_number(location, "latitude", "location"), lon=_opt_number(location, "longitude", "location"),
    )


Parser = Callable[..., list[RawReading]]
PARSERS: dict[Source, Parser] = {
    "native": parse_native, "senml": parse_senml, "ttn": parse_ttn, "chirpstack": parse_chirpstack,
}


def parse(fmt: Source, payload: bytes, topic: TopicInfo | None = None, **options: Any) -> list[RawReading]:
    """Parse `payload` as `fmt`; only PayloadError can come out, whatever the bytes."""
    try:
        return PARSERS[fmt](payload, topic, **options)
    except PayloadError:
        raise
    except Exception as exc:  # a parser bug must still become a dead letter, never a crash
        raise PayloadError(f"{fmt} payload could not be parsed: {type(exc).__name__}: {exc}") from exc
