"""Validated readings as columns: raw readings -> one NumPy-backed batch per message, plus reasons.

Range checks run on the whole value matrix at once; only the rows they reject go through the full
pydantic model, to produce a precise reason. The same columns carry Kafka records back into the
processors (`ReadingBatch.from_records`).
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
from pydantic import ValidationError

from schemas.adapters import RawReading
from schemas.bounds import INT64_MAX, counter_problem, number_problem, show
from schemas.envelope import IDENT, Reading, Source
from schemas.plugin import Domain
from schemas.registry import domain as get_domain
from schemas.registry import domains
from schemas.timeparse import format_ts
from schemas.units import conversion

_IDENT = re.compile(IDENT)
_LORAWAN = ("ttn", "chirpstack")


@dataclass
class ReadingBatch:
    """Readings of one domain as columns; `values[i, j]` is field `fields[j]` of reading i (NaN: absent)."""

    domain: str
    sensor_id: np.ndarray
    site: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    seq: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    lat: np.ndarray = field(default_factory=lambda: np.empty(0))
    lon: np.ndarray = field(default_factory=lambda: np.empty(0))
    source: np.ndarray = field(default_factory=lambda: np.empty(0, object))
    received_at: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))

    @property
    def fields(self) -> list[str]:
        return get_domain(self.domain).fields

    def __len__(self) -> int:
        return len(self.ts)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.fields.index(name)]

    def take(self, index: np.ndarray) -> "ReadingBatch":
        """The rows selected by a boolean mask or an index array."""
        return ReadingBatch(self.domain, self.sensor_id[index], self.site[index], self.ts[index],
                            self.values[index], self.seq[index], self.lat[index], self.lon[index],
                            self.source[index], self.received_at[index])

    def dicts(self) -> Iterator[dict[str, Any]]:
        """Canonical envelopes as plain dicts (JSON-ready), one per reading."""
        names = self.fields
        for i in range(len(self)):
            row = self.values[i]
            yield {
                "sensor_id": self.sensor_id[i], "domain": self.domain, "site": self.site[i],
                "ts": int(self.ts[i]), "seq": None if self.seq[i] < 0 else int(self.seq[i]),
                "lat": None if math.isnan(self.lat[i]) else float(self.lat[i]),
                "lon": None if math.isnan(self.lon[i]) else float(self.lon[i]),
                "values": {n: float(v) for n, v in zip(names, row) if v == v},
                "source": self.source[i], "received_at": int(self.received_at[i]),
            }

    @classmethod
    def concat(cls, batches: list["ReadingBatch"]) -> "ReadingBatch":
        """One batch from several of the same domain."""
        first = batches[0]
        return cls(first.domain, *(np.concatenate([getattr(b, name) for b in batches])
                                   for name in ("sensor_id", "site", "ts", "values", "seq", "lat", "lon",
                                                "source", "received_at")))

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """(Kafka key, JSON value) per reading: the telemetry.<domain> record format."""
        for d in self.dicts():
            yield d["sensor_id"].encode(), json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode()

    def readings(self) -> list[Reading]:
        """Pydantic envelopes (for the CLI and tests; the hot path stays columnar)."""
        return [Reading.model_validate(d) for d in self.dicts()]

    @classmethod
    def from_records(cls, domain_name: str, values: Iterable[bytes]) -> tuple["ReadingBatch", list[str]]:
        """Columns from Kafka record values of one domain; undecodable records are returned as reasons."""
        dom = get_domain(domain_name)
        index = {n: j for j, n in enumerate(dom.fields)}
        docs, errors = [], []
        for raw in values:
            try:
                d = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                errors.append(f"undecodable record: {show(str(exc))}")
                continue
            problem = _record_problem(d)
            if problem:
                errors.append(f"undecodable record: {problem}")
            else:
                docs.append(d)
        n = len(docs)
        matrix = np.full((n, len(index)), np.nan)
        for i, d in enumerate(docs):
            for name, v in d["values"].items():
                j = index.get(name)
                if j is not None:
                    matrix[i, j] = v
        return cls(
            domain=domain_name,
            sensor_id=np.array([d["sensor_id"] for d in docs], dtype=object),
            site=np.array([d.get("site", "") for d in docs], dtype=object),
            ts=np.fromiter((d["ts"] for d in docs), np.int64, n),
            values=matrix,
            seq=np.fromiter((-1 if d.get("seq") is None else d["seq"] for d in docs), np.int64, n),
            lat=np.fromiter((np.nan if d.get("lat") is None else d["lat"] for d in docs), float, n),
            lon=np.fromiter((np.nan if d.get("lon") is None else d["lon"] for d in docs), float, n),
            source=np.array([d.get("source", "native") for d in docs], dtype=object),
            received_at=np.fromiter((d.get("received_at", 0) for d in docs), np.int64, n),
        ), errors


def _record_problem(d: Any) -> str | None:
    """Why a telemetry record cannot become a row (None when it can): the columns are int64 and float,
    so a record that someone else produced with a string ts or a 30-digit seq must not reach them."""
    if not isinstance(d, dict):
        return "not a JSON object"
    if not isinstance(d.get("sensor_id"), str):
        return f"sensor_id {show(d.get('sensor_id'))} is not a string"
    for key, required in (("ts", True), ("seq", False), ("received_at", False)):
        value = d.get(key)
        if (value is not None or required) and (counter_problem(value) or value == 0 and key == "ts"):
            return f"{key} {show(value)} is not a positive int64"
    for key in ("lat", "lon"):
        if d.get(key) is not None and (number_problem(d[key]) or isinstance(d[key], bool)):
            return f"{key} {show(d[key])} is not a finite number"
    values = d.get("values")
    if not isinstance(values, dict) or any(number_problem(v) for v in values.values()):
        return f"values {show(values)} are not numbers"
    return None


@dataclass
class Decoded:
    """The outcome for one message: the valid readings (columns) and a reason per rejected reading."""

    batch: ReadingBatch | None
    errors: list[str]


@dataclass
class MessageReadings:
    """One message's parsed readings, waiting for validation."""

    raws: list[RawReading]
    source: Source
    domain: str | None = None          # the domain to validate against when the readings do not say
    received_at: int | None = None


@dataclass
class Validated:
    """The valid readings of many messages, one batch per domain with each row's message index, and
    the reasons for every rejected reading, by message index."""

    batches: dict[str, tuple[ReadingBatch, np.ndarray]]
    errors: dict[int, list[str]]


def validate_many(messages: list[MessageReadings], *, now_ns: int | None = None) -> Validated:
    """Validate the readings of many messages in one vectorised pass per domain (the bridge's hot
    path); a reason names the reading by its position in its own message (or the parser's `where`).
    Event times were bounded by the parsers (`schemas.timeparse.TimeWindow`)."""
    now = now_ns or time.time_ns()
    errors: dict[int, list[tuple[int, str]]] = {}
    by_domain: dict[str, list[tuple[int, int, RawReading]]] = {}
    for m, msg in enumerate(messages):
        message_domain: str | None = None
        for i, raw in enumerate(msg.raws):
            reason = raw.rejected or _identity_problem(raw, msg.domain)
            name = raw.domain or msg.domain
            if reason is None and message_domain is not None and name != message_domain:
                reason = f"domain {name!r} differs from the message's {message_domain!r}"
            if reason:
                errors.setdefault(m, []).append((i, f"{_label(raw, i)}: {reason}"))
                continue
            message_domain = name
            by_domain.setdefault(name, []).append((m, i, raw))  # type: ignore[arg-type]
    batches = {}
    for name, kept in by_domain.items():
        batch, message_of, rejected = _validate_domain(get_domain(name), kept, messages, now)
        for m, i, reason in rejected:
            errors.setdefault(m, []).append((i, reason))
        if batch is not None:
            batches[name] = (batch, message_of)
    return Validated(batches, {m: [reason for _, reason in sorted(r, key=lambda e: e[0])] for m, r in errors.items()})


def _label(raw: RawReading, i: int) -> str:
    return raw.where or f"reading {i}"


def _validate_domain(dom: Domain, kept: list[tuple[int, int, RawReading]], messages: list[MessageReadings],
                     now: int) -> tuple[ReadingBatch | None, np.ndarray, list[tuple[int, int, str]]]:
    """Range, cross-field and duplicate checks on the whole matrix of one domain's readings."""
    index = {n: j for j, n in enumerate(dom.fields)}
    n = len(kept)
    matrix = np.full((n, len(index)), np.nan)
    bad_reason: list[str | None] = [
        _fill_row(matrix[row], raw, dom, index, messages[m].source in _LORAWAN) for row, (m, _, raw) in enumerate(kept)]
    ts = np.fromiter((raw.ts for _, _, raw in kept), np.int64, n)
    message_of = np.fromiter((m for m, _, _ in kept), np.int64, n)
    lo, hi = dom.bounds()
    with np.errstate(invalid="ignore"):
        out_of_range = ((matrix < lo) | (matrix > hi)).any(axis=1)
    out_of_range |= dom.values.check_columns(dict(zip(dom.fields, matrix.T)))
    sensors = np.array([raw.sensor_id for _, _, raw in kept], dtype=object)
    duplicate = _duplicates(message_of, sensors, ts)
    suspect = np.flatnonzero(out_of_range | duplicate | np.array([r is not None for r in bad_reason]))
    ok = np.ones(n, bool)
    rejected: list[tuple[int, int, str]] = []
    for row in suspect:  # only rejected rows pay for a worded reason
        m, i, raw = kept[row]
        reason = bad_reason[row]
        if reason is None and out_of_range[row]:
            reason = _model_reason(dom, matrix[row])
        if reason is None and duplicate[row]:
            reason = f"duplicate reading for sensor {raw.sensor_id!r} at {format_ts(int(ts[row]))}"
        if reason:
            rejected.append((m, i, f"{_label(raw, i)}: {reason}"))
            ok[row] = False
    if not ok.any():
        return None, message_of[:0], rejected
    good = [kept[row] for row in np.flatnonzero(ok)]
    k = len(good)
    batch = ReadingBatch(
        domain=dom.name,
        sensor_id=sensors[ok],
        site=np.array([r.site for _, _, r in good], dtype=object),
        ts=ts[ok],
        values=matrix[ok],
        seq=np.fromiter((-1 if r.seq is None else r.seq for _, _, r in good), np.int64, k),
        lat=np.fromiter((np.nan if r.lat is None else r.lat for _, _, r in good), float, k),
        lon=np.fromiter((np.nan if r.lon is None else r.lon for _, _, r in good), float, k),
        source=np.array([messages[m].source for m, _, _ in good], dtype=object),
        received_at=np.fromiter((messages[m].received_at or now for m, _, _ in good), np.int64, k),
    )
    return batch, message_of[ok], rejected


def validate(raws: list[RawReading], source: Source, *, domain: str | None = None,
             received_at: int | None = None, now_ns: int | None = None) -> Decoded:
    """Validate one message's readings against their domain; every rejection comes back with a reason."""
    result = validate_many([MessageReadings(raws, source, domain, received_at or time.time_ns())], now_ns=now_ns)
    batch = next(iter(result.batches.values()))[0] if result.batches else None
    return Decoded(batch, result.errors.get(0, []))


def _identity_problem(raw: RawReading, domain: str | None) -> str | None:
    """Why a reading cannot enter the columns (None when it can): domain, ids, and every number that
    NumPy will hold (ts and seq inside int64, lat/lon finite and on the globe)."""
    name = raw.domain or domain
    if name is None:
        return (f"no domain for sensor {raw.sensor_id!r}: publish on city/<domain>/..., pass --domain, "
                "or add a device profile to schemas/devices.toml or the SMARTCITY_DEVICES file")
    if raw.domain and domain and raw.domain != domain:
        return f"domain {raw.domain!r} contradicts the expected {domain!r}"
    if name not in domains():
        return f"unknown domain {show(name)}; known: {', '.join(domains())}"
    for what in ("sensor_id", "site"):
        value = getattr(raw, what)
        if value is None:
            return f"no {what}: the topic or the payload must name it"
        if not isinstance(value, str) or not _IDENT.match(value):
            return f"{what} {show(value)} is not an id (letters, digits, _ . : -; at most 64)"
    if raw.ts is None:
        return "missing timestamp"
    if isinstance(raw.ts, bool) or not isinstance(raw.ts, int) or not 0 < raw.ts <= INT64_MAX:
        return f"timestamp {show(raw.ts)} is not a time in int64 nanoseconds since 1970"
    if raw.seq is not None and (problem := counter_problem(raw.seq)):
        return f"seq {problem}"
    if raw.lat is None and raw.lon is None:
        return None
    for what, limit in (("lat", 90), ("lon", 180)):
        value = getattr(raw, what)
        if value is None:
            continue
        if (problem := number_problem(value)) or isinstance(value, bool):
            return f"{what} {problem or 'must be a number, got a boolean'}"
        if not -limit <= value <= limit:
            return f"{what} {value} is outside -{limit}..{limit}"
    return None


def _fill_row(row: np.ndarray, raw: RawReading, dom: Domain, index: dict[str, int], lorawan: bool) -> str | None:
    if not isinstance(raw.values, dict) or not raw.values:
        return "no values"
    for name, value in raw.values.items():
        j = index.get(name)
        if j is None:
            return f"unknown field {show(name)} for domain {dom.name} (known: {', '.join(dom.fields)})"
        problem = number_problem(value)
        if problem:
            hint = ("; a payload formatter that writes numbers as strings needs numbers_as_strings = true "
                    "in its device profile") if lorawan and isinstance(value, str) else ""
            return f"field {name!r} {problem}{hint}"
        unit = raw.units.get(name)
        if unit is not None:
            try:
                scale, offset = conversion(unit, dom.unit(name))
            except ValueError as exc:
                return f"field {name!r}: {exc}"
            value = value * scale + offset
        row[j] = value
    return None


def _model_reason(dom: Domain, row: np.ndarray) -> str:
    values = {n: float(v) for n, v in zip(dom.fields, row) if v == v}
    try:
        dom.validate_values(values)
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'values'}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["loc"] else "")
            for e in exc.errors(include_url=False)
        )
    return "values outside the domain's physical ranges"


def _duplicates(message: np.ndarray, sensors: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """True for every reading whose (sensor, ts) already appeared earlier in the same message."""
    if len(ts) < 2:
        return np.zeros(len(ts), bool)
    keys = np.char.add(np.char.add(message.astype(str), "|"),
                       np.char.add(sensors.astype(str), np.char.add("|", ts.astype(str))))
    _, first = np.unique(keys, return_index=True)
    dup = np.ones(len(ts), bool)
    dup[first] = False
    return dup
