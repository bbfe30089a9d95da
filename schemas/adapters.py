"""Payload adapters: raw MQTT bytes in one of four formats -> format-neutral `RawReading`s.

Native JSON, SenML (RFC 8428), The Things Stack v3 uplinks and ChirpStack v4 `up` events. A problem
with the whole message raises `PayloadError` with a precise reason; a problem with one reading (or one
SenML record) becomes a rejected `RawReading` carrying its reason, so the other readings of the message
still go through. Any other exception is a bug and is left to the caller's per-message guard (the
bridge dead-letters it as an internal error); it is never disguised as a rejection. Every timestamp
is bounded by a `TimeWindow` here; domain validation happens afterwards, for all formats alike, in
`schemas.batch`.

Identity rules:
- native: `sensor_id`/`site` in a reading must agree with the `city/<domain>/<site>/<sensor>/up` topic.
- SenML on `city/<domain>/<site>/<sensor>/senml`: domain and site always come from the topic; the
  sensor is the part of the record's resolved name (bn + n) before its last `/` or `:`, and the
  topic's sensor only when the name has no such part. A gateway may thus publish a pack for several
  sensors of its site, and a pack naming another sensor is honoured, never re-attributed; it can never
  move readings into another site or domain.
- LoRaWAN: the device id (TTN `device_id`, ChirpStack `devEui`), domain and site from its profile.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Literal

from schemas.bounds import counter_problem, number_problem, show
from schemas.devices import DeviceProfiles, load_profiles
from schemas.envelope import Source
from schemas.registry import domain as get_domain
from schemas.registry import domains
from schemas.timeparse import TimeWindow, format_ts, parse_gps_duration, parse_ts
from schemas.units import conversion

FORMATS: tuple[Source, ...] = ("native", "senml", "ttn", "chirpstack")
MAX_PAYLOAD = 16 * 1024 * 1024
SENML_RELATIVE_LIMIT = 2**28   # RFC 8428 §4.5.3: smaller times are relative to now
LORAWAN_FCNT_BITS = 32          # f_cnt (The Things Stack) and fCnt (ChirpStack) are uint32
SENML_VERSION = 10             # the SenML version understood here (RFC 8428 §4.4: reject only newer ones)
_SENML_BASE = {"bn", "bt", "bu", "bv", "bs", "bver"}
_SENML_VALUES = {"v", "vs", "vb", "vd", "s"}
_SENML_LABELS = _SENML_BASE | _SENML_VALUES | {"n", "u", "t", "ut"}


class PayloadError(ValueError):
    """A message (or, inside a parser, one reading) that cannot be decoded; `reason` is what goes into
    the dead-letter record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class RawReading:
    """What a format carried, before domain validation (`smartcity decode --raw` prints this).

    `rejected` is set for a reading (or SenML record) the parser already refused; `where` names it in
    the reason when its position in the list would not ("record 3" of a SenML pack)."""

    sensor_id: str | None
    ts: int | None
    values: dict[str, Any]
    units: dict[str, str] = field(default_factory=dict)
    domain: str | None = None
    site: str | None = None
    seq: int | None = None
    lat: float | None = None
    lon: float | None = None
    rejected: str | None = None
    where: str | None = None

    @classmethod
    def refused(cls, reason: str, where: str | None = None) -> "RawReading":
        return cls(sensor_id=None, ts=None, values={}, rejected=reason, where=where)


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
    """The format and identity a topic carries (docs/architecture.md, MQTT topics); PayloadError if unknown."""
    if m := _CITY.match(topic):
        kind = {"up": "native", "senml": "senml", "status": "status"}[m.group(4)]
        return TopicInfo(kind, m.group(1), m.group(2), m.group(3))  # type: ignore[arg-type]
    if _TTN.match(topic):
        return TopicInfo("ttn")
    if _CHIRPSTACK.match(topic):
        return TopicInfo("chirpstack")
    raise PayloadError(f"topic {show(topic)} matches no source (city/<domain>/<site>/<sensor>/up|senml, "
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
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PayloadError("malformed JSON: nested too deeply") from None
    except PayloadError:
        raise
    except ValueError as exc:  # Python refuses integers of more than 4300 digits
        raise PayloadError(f"malformed JSON: {show(str(exc))}: a number has thousands of digits") from None


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"malformed JSON: {name} is not a number JSON allows")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # one decoder: json.loads(...) builds one per call


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be a JSON object, got {_kind(value)}")
    return value


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (rx_metadata, rxInfo); anything else counts as none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _time(value: Any, where: str, bounds: tuple[int, int]) -> int:
    try:
        return parse_ts(value, bounds)
    except ValueError as exc:
        raise PayloadError(f"{where}: {exc}") from None


def _opt_number(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    problem = number_problem(value)
    if problem:
        raise PayloadError(f"{where}{key} {problem}")
    return float(value)


def _opt_seq(obj: dict[str, Any], key: str, where: str, bits: int = 63) -> int | None:
    """A sequence number or frame counter of `bits` bits, when present."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is float and value.is_integer() and abs(value) < 2**64:
        value = int(value)  # a JSON number: 7.0 is 7 (RFC 8259 §6 knows no integer type)
    problem = counter_problem(value, bits)
    if problem:
        width = " (a LoRaWAN frame counter is a uint32)" if bits == LORAWAN_FCNT_BITS else ""
        raise PayloadError(f"{where}{key} {problem}{width}")
    return value


def _window(window: TimeWindow | None) -> tuple[TimeWindow, tuple[int, int]]:
    window = window or TimeWindow()
    return window, window.bounds()


# -- native -------------------------------------------------------------------------------------

def parse_native(payload: bytes, topic: TopicInfo | None = None, *, window: TimeWindow | None = None,
                 profiles: DeviceProfiles | None = None) -> list[RawReading]:
    """Native JSON: an object or an array of objects {ts, values{...}, [seq, lat, lon, sensor_id, site]}."""
    doc = load_json(payload)
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise PayloadError("empty array: no readings")
    _, bounds = _window(window)
    where = None if isinstance(doc, list) else "reading"  # an array names its readings by position
    out = []
    for item in items:
        try:
            out.append(_native_reading(item, topic, bounds))
        except PayloadError as exc:
            out.append(RawReading.refused(exc.reason, where))
    return out


def _native_reading(item: Any, topic: TopicInfo | None, bounds: tuple[int, int]) -> RawReading:
    item = _obj(item, "a reading")
    if "ts" not in item:
        raise PayloadError("missing ts (RFC 3339 string or epoch seconds)")
    return RawReading(
        sensor_id=_ident(item, "sensor_id", topic.sensor_id if topic else None),
        site=_ident(item, "site", topic.site if topic else None),
        domain=topic.domain if topic else None,
        ts=_time(item["ts"], "ts", bounds),
        values=_obj(item.get("values"), "values"),
        seq=_opt_seq(item, "seq", ""),
        lat=_opt_number(item, "lat", ""),
        lon=_opt_number(item, "lon", ""),
    )


def _ident(item: dict[str, Any], key: str, from_topic: str | None) -> str | None:
    value = item.get(key)
    if value is None:
        return from_topic
    if not isinstance(value, str):
        raise PayloadError(f"{key} must be a string, got {show(value)}")
    if from_topic is not None and value != from_topic:
        raise PayloadError(f"{key} {show(value)} contradicts the topic's {from_topic!r}")
    return value


# -- SenML ----------------------------------------------------------------------------------------

def parse_senml(payload: bytes, topic: TopicInfo | None = None, *, window: TimeWindow | None = None,
                profiles: DeviceProfiles | None = None) -> list[RawReading]:
    """SenML JSON pack (RFC 8428): base name/time/unit/value resolved; records grouped by (sensor, time).

    The resolved name is `<sensor>/<field>` or `<sensor>:<field>` (split at the last separator); see the
    module's identity rules for city topics. A record that is not a numeric reading (vs, vd, a sum
    alone, a bad value or time) is rejected on its own, as `record <k>`; a broken base field, an unknown
    label ending in `_` or a newer `bver` rejects the pack."""
    doc = load_json(payload)
    if not isinstance(doc, list) or not doc:
        raise PayloadError(f"a SenML pack must be a non-empty JSON array, got {_kind(doc) if doc != [] else 'an empty array'}")
    window, bounds = _window(window)
    now_s = (window.now_ns if window.now_ns is not None else time.time_ns()) / 1e9
    base: dict[str, Any] = {"bn": "", "bt": 0.0, "bu": None, "bv": 0.0}
    out: list[RawReading] = []
    groups: dict[tuple[str, float], RawReading] = {}
    for k, rec in enumerate(doc):
        where = f"record {k}"
        rec = _obj(rec, where)
        _senml_pack_rules(rec, where, base)
        if not _SENML_VALUES.intersection(rec) and not {"n", "u", "t"}.intersection(rec):
            continue  # a record of base fields only: labels it does not know are ignored (RFC 8428 §4.4)
        try:
            _senml_record(rec, base, topic, bounds, now_s, groups, out)
        except PayloadError as exc:
            out.append(RawReading.refused(exc.reason, where))
    if not out:
        raise PayloadError("the SenML pack has no value records")
    return out


def _senml_pack_rules(rec: dict[str, Any], where: str, base: dict[str, Any]) -> None:
    """RFC 8428 §4.4 version and must-understand labels, then the base fields this record sets."""
    for label in () if _SENML_LABELS.issuperset(rec) else rec.keys() - _SENML_LABELS:  # RFC 8428's own never end in _
        if label.endswith("_"):
            raise PayloadError(f"{where}: label {show(label)} ends in '_', so it must be understood "
                               "(RFC 8428 §4.4), and it is not: the pack is rejected")
    if "bver" in rec:
        bver = rec["bver"]  # a JSON number: 10 and 10.0 are the same number (RFC 8428 §4.3, RFC 8259 §6)
        if number_problem(bver) or bver < 1 or bver != int(bver):
            raise PayloadError(f"{where}: bver must be a positive integer, got {show(bver)}")
        if bver > SENML_VERSION:
            raise PayloadError(f"{where}: SenML version bver={show(bver)} is newer than version {SENML_VERSION} "
                               "understood here (RFC 8428 §4.4)")
    for key, kind in (("bn", str), ("bu", str), ("bt", float), ("bv", float)):
        if key in rec:
            base[key] = _str(rec, key, where) if kind is str else _num(rec, key, where)


def _senml_record(rec: dict[str, Any], base: dict[str, Any], topic: TopicInfo | None, bounds: tuple[int, int],
                  now_s: float, groups: dict[tuple[str, float], RawReading], out: list[RawReading]) -> None:
    """Add one record's value to the reading of its (sensor, time); PayloadError rejects this record."""
    name = base["bn"] + (_str(rec, "n", "") if "n" in rec else "")
    if not name:
        raise PayloadError("no name (neither bn nor n)")
    if len(given := [k for k in ("v", "vs", "vb", "vd") if k in rec]) > 1:
        raise PayloadError(f"{show(name)}: a record carries exactly one value (RFC 8428 §4.3), this one has "
                           f"{', '.join(given)}; send each value in a record of its own")
    if "v" in rec:
        value: float = base["bv"] + _num(rec, "v", show(name))
    elif "vb" in rec:
        if not isinstance(rec["vb"], bool):
            raise PayloadError(f"{show(name)}: vb must be a boolean, got {show(rec['vb'])}")
        value = rec["vb"]  # stays a boolean: validation lets it feed a flag field only
    elif "vs" in rec or "vd" in rec:
        kind = "string (vs)" if "vs" in rec else "data (vd)"
        raise PayloadError(f"{show(name)} carries a {kind} value; only numbers (v) and booleans (vb) are readings")
    elif "s" in rec:
        raise PayloadError(f"{show(name)} carries only a sum (s); send the instantaneous value as v")
    else:
        raise PayloadError(f"{show(name)} has no value (v, vb)")
    t = base["bt"] + (_num(rec, "t", "") if "t" in rec else 0.0)
    if t < SENML_RELATIVE_LIMIT:
        t += now_s
    unit = _str(rec, "u", "") if "u" in rec else base["bu"]
    sensor, fieldname = _split_name(name, topic, unit)
    if not fieldname:
        raise PayloadError(f"name {show(name)} has no field part (<sensor>/<field>)")
    position = fieldname in _POSITION and unit == fieldname
    if not position and topic and topic.domain and (problem := _senml_field_problem(topic.domain, fieldname, unit)):
        raise PayloadError(problem)  # each record stands alone: a field it cannot feed rejects it only
    key = (sensor or "", t)
    reading = groups.get(key)
    if reading is None:
        ts = _time(t, "time (bt + t)", bounds)
        reading = groups[key] = RawReading(
            sensor_id=sensor, ts=ts, values={},
            domain=topic.domain if topic else None, site=topic.site if topic else None)
        out.append(reading)
    if position:  # RFC 8428 §5.1.3: the sensor's position at that time, in units lat and lon
        if getattr(reading, fieldname) is not None:
            raise PayloadError(f"duplicate {fieldname} of {show(sensor)} at the same time")
        setattr(reading, fieldname, value)
        return
    if fieldname in reading.values:
        raise PayloadError(f"duplicate value for {show(fieldname)} of {show(sensor)} at the same time")
    reading.values[fieldname] = value
    if unit is not None:
        reading.units[fieldname] = unit


@lru_cache(maxsize=1024)
def _senml_field_problem(domain: str, fieldname: str, unit: str | None) -> str | None:
    """Why a record's field (and unit) cannot feed the topic's domain; None when it can (or the domain
    is unknown, which validation reports)."""
    if domain not in domains():
        return None
    dom = get_domain(domain)
    if fieldname not in dom.values.model_fields:
        return f"unknown field {show(fieldname)} for domain {domain} (known: {', '.join(dom.fields)})"
    if unit is not None:
        try:
            conversion(unit, dom.unit(fieldname))
        except ValueError as exc:
            return f"field {fieldname!r}: {exc}"
    return None


def _split_name(name: str, topic: TopicInfo | None, unit: str | None) -> tuple[str | None, str]:
    """(sensor, field) from a resolved SenML name; the topic's sensor when the name names none.

    A name that is a device's own URN (RFC 9039, `urn:dev:ow:10e2073a01080063` in RFC 8428 §5.1.1 and
    §5.1.3) names no field: it is wholly the sensor's and its unit tells the quantity, `lat`/`lon` its
    position, another unit the one field of the topic's domain measured in it."""
    if _DEVICE_URN.match(name):
        return name, _unit_field(name, topic.domain if topic else None, unit)
    cut = max(name.rfind("/"), name.rfind(":"))
    if cut < 0:
        return (topic.sensor_id if topic else None), name
    fieldname = name[cut + 1:]
    return name[:cut], (unit if unit in _POSITION and fieldname in _POSITION_NAMES else fieldname)


_DEVICE_URN = re.compile(r"^urn:dev:[a-z]+:[^:/]+$")
_POSITION = ("lat", "lon")
_POSITION_NAMES = {"lat", "lon", "latitude", "longitude"}


def _unit_field(name: str, domain: str | None, unit: str | None) -> str:
    """The quantity of a record named by a device URN alone; PayloadError when its unit tells none."""
    if unit in _POSITION:
        return unit
    if domain is None or domain not in domains():
        raise PayloadError(f"name {show(name)} is a device's, with no field part, and no known domain tells which "
                           "field its unit measures: publish on city/<domain>/<site>/<sensor>/senml")
    dom = get_domain(domain)
    fits = [f for f in dom.fields if unit is not None and _converts(unit, dom.unit(f))]
    if len(fits) != 1:
        raise PayloadError(f"name {show(name)} is a device's, with no field part, and its unit {show(unit)} measures "
                           f"{'several' if fits else 'none'} of the fields of domain {domain}: name the field "
                           "(bn '<device>:' and n '<field>', RFC 8428 §5.1.2)")
    return fits[0]


def _converts(unit: str, target: str) -> bool:
    try:
        conversion(unit, target)
    except ValueError:
        return False
    return True


def _str(rec: dict[str, Any], key: str, where: str) -> str:
    if not isinstance(rec[key], str):
        raise PayloadError(f"{where}{': ' if where else ''}{key} must be a string, got {show(rec[key])}")
    return rec[key]


def _num(rec: dict[str, Any], key: str, where: str) -> float:
    value = rec[key]
    problem = number_problem(value)
    if problem:
        raise PayloadError(f"{where}{': ' if where else ''}{key} {problem}")
    return float(value)


# -- LoRaWAN network servers ----------------------------------------------------------------------

def parse_ttn(payload: bytes, topic: TopicInfo | None = None, *, window: TimeWindow | None = None,
              profiles: DeviceProfiles | None = None) -> list[RawReading]:
    """The Things Stack v3 uplink: device ids, `uplink_message.decoded_payload`, time and location.

    Event time (`_event_time`): the network's, first of the Network Server's `uplink_message.received_at`,
    the Application Server's `received_at` and a Gateway Server's `rx_metadata[].received_at`; a gateway's
    GPS time (`rx_metadata[].gps_time`) when it agrees with it, the more precise time on air. Without a
    network time, the gateways' times (`gps_time`, `time`) that most gateways agree on. Location:
    `uplink_message.locations` (`user`, the registry's, first), else the decoded payload's fields named
    by the profile. `f_cnt` is a uint32, and The Things Stack omits fields that are 0, so no `f_cnt` is 0.
    A simulated uplink (`"simulated": true`) is no device's reading: rejected, so kept but never counted."""
    doc = _obj(load_json(payload), "a TTN uplink")
    if doc.get("simulated") is True:  # Data Formats: "Signals if the message ... is simulated"
        raise PayloadError("simulated uplink ('simulated': true, e.g. from the Console): not a device's reading, "
                           "so it is kept here and never counted")
    ids = _obj(doc.get("end_device_ids"), "end_device_ids")
    device = _device_id(ids, "device_id", "end_device_ids")
    app = _obj(ids.get("application_ids"), "end_device_ids.application_ids").get("application_id")
    up = _obj(doc.get("uplink_message"), "uplink_message")
    decoded = _decoded(up, "decoded_payload", "uplink_message.decoded_payload")
    _, bounds = _window(window)
    gateways = _dicts(up.get("rx_metadata"))
    ts = _event_time(
        bounds,
        [("uplink_message.received_at", up.get("received_at"), parse_ts), ("received_at", doc.get("received_at"), parse_ts)]
        + [(f"rx_metadata[{i}].received_at", m.get("received_at"), parse_ts) for i, m in enumerate(gateways)],
        [[(f"rx_metadata[{i}].gps_time", m.get("gps_time"), parse_ts), (f"rx_metadata[{i}].time", m.get("time"), parse_ts)]
         for i, m in enumerate(gateways)])
    locations = up.get("locations") if isinstance(up.get("locations"), dict) else {}
    located = [locations["user"]] if isinstance(locations.get("user"), dict) else []
    located += [v for k, v in locations.items() if k != "user" and isinstance(v, dict)]
    return [_lorawan_reading(profiles, app, device, None, ts, decoded,
                             _opt_seq({"f_cnt": 0, **up}, "f_cnt", "uplink_message.", LORAWAN_FCNT_BITS),
                             located[0] if located else None)]


def parse_chirpstack(payload: bytes, topic: TopicInfo | None = None, *, window: TimeWindow | None = None,
                     profiles: DeviceProfiles | None = None) -> list[RawReading]:
    """ChirpStack v4 `up` event: `deviceInfo`, `object` (codec output), time, `fCnt` (a uint32).

    Event time (`_event_time`): the network server's `rxInfo[].nsTime`, else the event's `time` when it is
    not a copy of a gateway's clock (ChirpStack fills it from the first gateway clock it finds, else its
    own); a gateway's GPS time (`rxInfo[].timeSinceGpsEpoch`) when it agrees with that, the more precise
    time on air. Without a network time, the gateways' times (GPS, `gwTime`) that most gateways agree on.
    The up event carries no device location: it comes from the decoded object's fields named by the
    profile (`latitude`, `longitude` by default). Its JSON omits zero values (protobuf JSON mapping), so
    no `fCnt` is 0."""
    doc = _obj(load_json(payload), "a ChirpStack up event")
    info = _obj(doc.get("deviceInfo"), "deviceInfo")
    dev_eui = _device_id(info, "devEui", "deviceInfo")
    decoded = _decoded(doc, "object", "object")
    _, bounds = _window(window)
    gateways = _dicts(doc.get("rxInfo"))
    ts = _event_time(
        bounds, [(f"rxInfo[{i}].nsTime", m.get("nsTime"), parse_ts) for i, m in enumerate(gateways)],
        [[(f"rxInfo[{i}].timeSinceGpsEpoch", m.get("timeSinceGpsEpoch"), parse_gps_duration),
          (f"rxInfo[{i}].gwTime", m.get("gwTime"), parse_ts)] for i, m in enumerate(gateways)],
        copy=("time", doc.get("time"), parse_ts))
    tags = info.get("tags") if isinstance(info.get("tags"), dict) else {}
    return [_lorawan_reading(profiles, info.get("deviceProfileName"), dev_eui.lower(), tags.get("site"), ts, decoded,
                             _opt_seq({"fCnt": 0, **doc}, "fCnt", "event ", LORAWAN_FCNT_BITS), None)]


Candidate = tuple[str, Any, Callable[..., int]]  # (where in the message, the value, its parser)
GATEWAY_TOLERANCE_NS = 10 * 10**9  # a gateway time this close to the network server's agrees with it


def _event_time(bounds: tuple[int, int], network: list[Candidate], gateways: list[list[Candidate]],
                copy: Candidate | None = None) -> int:
    """An uplink's event time, never one gateway's clock against the network server or the other gateways.

    `gateways` lists each gateway's (GPS time, own clock). The reference is the first network-server
    time inside the window (`copy`, a field that is either a gateway's clock copied or the server's own,
    counts as the server's when it equals no gateway time). A gateway's GPS time within
    `GATEWAY_TOLERANCE_NS` of the reference is taken for its precision; else the reference. With no
    network time at all, the time that the most gateways agree on within the tolerance, when no other
    time has as many; else PayloadError."""
    problems: list[str] = []
    votes = [(ns, g, where, k == 0) for g, times in enumerate(gateways) for k, (where, value, parser) in enumerate(times)
             if (ns := _parsed(where, value, parser, bounds, problems)) is not None]
    looked = [c[0] for c in network] + ([copy[0]] if copy else []) + [w for times in gateways for w, _, _ in times]
    if copy is not None and (copied := _parsed(*copy, bounds, problems)) is not None:
        if all(copied != vote[0] for vote in votes):
            network = [*network, copy]
    present = [c for c in network if c[1] is not None]
    if not present:
        return _agreed_gateway_time(votes, problems, looked)
    first_problem = len(problems)
    ref = next((ns for c in present if (ns := _parsed(*c, bounds, problems)) is not None), None)
    if ref is None:  # the network server's own time is out of the window or malformed: that decides
        raise PayloadError(problems[first_problem])
    return next((ns for ns, _, _, gps in votes if gps and abs(ns - ref) <= GATEWAY_TOLERANCE_NS), ref)


def _parsed(where: str, value: Any, parser: Callable[..., int], bounds: tuple[int, int],
            problems: list[str]) -> int | None:
    """UTC ns of a present candidate inside the window; None when absent, or (its reason kept in
    `problems`) outside the window or malformed."""
    if value is None:
        return None
    try:
        return parser(value, bounds)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return None


def _agreed_gateway_time(votes: list[tuple[int, int, str, bool]], problems: list[str], looked: list[str]) -> int:
    """The gateway time that the most gateways agree on within the tolerance (GPS first, then the first
    gateway); PayloadError when none is present or another time has as many gateways behind it."""
    if not votes:
        if problems:
            raise PayloadError(problems[0])
        raise PayloadError("missing timestamp: none of " + ", ".join(dict.fromkeys(looked)))
    votes = sorted(votes)
    support = _support(votes)
    best = max(range(len(votes)), key=lambda k: (support[k], votes[k][3], -votes[k][1]))
    at = votes[best][0]
    rivals = [k for k in range(len(votes)) if abs(votes[k][0] - at) > GATEWAY_TOLERANCE_NS and support[k] == support[best]]
    if rivals:
        other = votes[rivals[0]]
        raise PayloadError(f"the gateways disagree on the time and the network server gave none: {votes[best][2]} says "
                           f"{format_ts(at)}, {other[2]} says {format_ts(other[0])}; fix that gateway's clock (GNSS) "
                           "or forward the network server's time")
    return at


def _support(votes: list[tuple[int, int, str, bool]]) -> list[int]:
    """For each vote (sorted by time), how many distinct gateways have a time within the tolerance of it:
    one sweep with two edges, linear after the sort whatever the number of gateways."""
    counts: dict[int, int] = {}
    support, lo, hi = [], 0, 0
    for ns, _, _, _ in votes:
        while hi < len(votes) and votes[hi][0] <= ns + GATEWAY_TOLERANCE_NS:
            counts[votes[hi][1]] = counts.get(votes[hi][1], 0) + 1
            hi += 1
        while votes[lo][0] < ns - GATEWAY_TOLERANCE_NS:
            counts[votes[lo][1]] -= 1
            if not counts[votes[lo][1]]:
                del counts[votes[lo][1]]
            lo += 1
        support.append(len(counts))
    return support


def _device_id(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where}.{key} is missing")
    return value


def _decoded(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """The network server's decoded values; without them the message is dead-lettered, never dropped."""
    decoded = obj.get(key)
    if not decoded:
        raise PayloadError(f"no decoded payload: {where} is missing or empty; give the device a payload formatter "
                           "(The Things Stack) or a codec (ChirpStack device profile) so the network server decodes it")
    return _obj(decoded, where)


def _lorawan_reading(profiles: DeviceProfiles | None, name: Any, device: str, site: Any, ts: int,
                     decoded: dict[str, Any], seq: int | None, location: dict[str, Any] | None) -> RawReading:
    """The reading of one uplink: values through the device profile called `name` (none: validation
    says what to add)."""
    profile = (profiles or load_profiles()).profiles.get(name) if isinstance(name, str) else None
    if location is None and profile is not None:
        location = {"latitude": profile.number(decoded.get(profile.latitude)),
                    "longitude": profile.number(decoded.get(profile.longitude))}
    location = location or {}
    try:
        values = profile.map_values(decoded) if profile else dict(decoded)
    except ValueError as exc:  # a value the profile cannot read: this reading is refused, like any bad value
        return RawReading.refused(f"{exc} (device profile {name!r})")
    return RawReading(
        sensor_id=device, ts=ts, values=values,
        domain=profile.domain if profile else None,
        site=site if isinstance(site, str) else (profile.site if profile else None), seq=seq,
        lat=_opt_number(location, "latitude", "location "), lon=_opt_number(location, "longitude", "location "),
    )


Parser = Callable[..., list[RawReading]]
PARSERS: dict[Source, Parser] = {
    "native": parse_native, "senml": parse_senml, "ttn": parse_ttn, "chirpstack": parse_chirpstack,
}


def parse(fmt: Source, payload: bytes, topic: TopicInfo | None = None, *, window: TimeWindow | None = None,
          profiles: DeviceProfiles | None = None) -> list[RawReading]:
    """Parse `payload` as `fmt`. PayloadError is a deliberate rejection with its reason; any other
    exception is a parser bug, which the caller isolates to this one message."""
    return PARSERS[fmt](payload, topic, window=window, profiles=profiles)
