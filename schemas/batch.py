"""Validated readings as columns: raw readings -> one NumPy-backed batch per message, plus reasons.

Range checks run on the whole value matrix at once; only the rows they reject go through the full
pydantic model, to produce a precise reason. The same columns carry Kafka records back into the
processors (`ReadingBatch.from_records`).
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
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

    def records(self, message_of: np.ndarray | None = None) -> Iterator[tuple[bytes, bytes, int, int]]:
        """The telemetry.<domain> record format: one record per run of rows of one sensor (same site,
        source and arrival) within one message (`message_of`, None: one message), its readings as
        columns with every name once and no nulls but for absent values inside a column. Yields
        (Kafka key = site id, JSON value, newest event time in ms, the run's first row). Keyed by site,
        every record of a site lands on one partition, so one processor of a group owns the whole site
        and its windows (a sensor belongs to one site: its records stay in order on that partition)."""
        n = len(self)
        if not n:
            return
        msg = np.zeros(n, np.int64) if message_of is None else np.asarray(message_of)
        start = np.zeros(n, bool)
        start[0] = True
        for column in (msg, self.sensor_id, self.site, self.source, self.received_at):
            start[1:] |= column[1:] != column[:-1]
        starts = np.flatnonzero(start)
        ends = np.append(starts[1:], n).tolist()
        present = ~np.isnan(self.values)
        has = np.logical_or.reduceat(present, starts)      # [runs, fields]: the field appears in the run
        full = np.logical_and.reduceat(present, starts)    # ... in every reading of the run
        seq_any = np.logical_or.reduceat(self.seq >= 0, starts).tolist()
        geo_any = np.logical_or.reduceat(~np.isnan(self.lat) | ~np.isnan(self.lon), starts).tolist()
        newest = np.maximum.reduceat(self.ts, starts) // 10**6
        names, columns = self.fields, self.values.T.tolist()
        ts, seq, lat, lon = self.ts.tolist(), self.seq.tolist(), self.lat.tolist(), self.lon.tolist()
        sensors, sites, sources, arrived = (self.sensor_id.tolist(), self.site.tolist(), self.source.tolist(),
                                            self.received_at.tolist())
        for r, (a, b) in enumerate(zip(starts.tolist(), ends)):
            values = {}
            for j in np.flatnonzero(has[r]).tolist():
                col = columns[j][a:b]
                values[names[j]] = col if full[r, j] else [None if v != v else v for v in col]
            doc: dict[str, Any] = {"sensor_id": sensors[a], "domain": self.domain, "site": sites[a],
                                   "source": sources[a], "received_at": arrived[a], "ts": ts[a:b], "values": values}
            if seq_any[r]:
                doc["seq"] = [None if v < 0 else v for v in seq[a:b]]
            if geo_any[r]:
                doc["lat"] = [None if v != v else v for v in lat[a:b]]
                doc["lon"] = [None if v != v else v for v in lon[a:b]]
            yield (sites[a].encode(), json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode(),
                   int(newest[r]), a)

    def readings(self) -> list[Reading]:
        """Pydantic envelopes (for the CLI and tests; the hot path stays columnar)."""
        return [Reading.model_validate(d) for d in self.dicts()]

    @classmethod
    def from_records(cls, domain_name: str, values: Iterable[bytes]) -> tuple["ReadingBatch", list[str]]:
        """Columns from Kafka record values of one domain (the column records `records()` writes, and
        the one-reading-per-record format of earlier bridges, still in a topic after an upgrade);
        undecodable records are returned as reasons."""
        dom = get_domain(domain_name)
        index = {n: j for j, n in enumerate(dom.fields)}
        cols = _Columns(len(index))
        errors = []
        for raw in values:
            try:
                d = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                errors.append(f"undecodable record: {show(str(exc))}")
                continue
            problem = _identity_of_record(d, domain_name) or (
                _columns_problem(d) if isinstance(d.get("ts"), list) else _record_problem(d))
            if problem:
                errors.append(f"undecodable record: {problem}")
            else:
                cols.add(d, index)
        return cols.batch(domain_name), errors


def record_readings(value: bytes) -> list[dict[str, Any]]:
    """The canonical envelopes (dicts) in one telemetry record of either format, for tools and tests
    that look at single records (processors decode whole polls with `ReadingBatch.from_records`)."""
    doc = json.loads(value)
    batch, errors = ReadingBatch.from_records(doc["domain"], [value])
    if errors:
        raise ValueError(errors[0])
    return list(batch.dicts())


class _Columns:
    """Decoded records gathered as Python lists, turned into arrays once per batch."""

    def __init__(self, fields: int) -> None:
        self.sensor_id: list[str] = []
        self.site: list[str] = []
        self.source: list[str] = []
        self.received_at: list[int] = []
        self.ts: list[int] = []
        self.seq: list[int | None] = []
        self.lat: list[float | None] = []
        self.lon: list[float | None] = []
        self.values: list[list[float | None]] = [[] for _ in range(fields)]

    def add(self, d: dict[str, Any], index: dict[str, int]) -> None:
        """One checked record: a column record, or a single reading (scalars)."""
        columns = isinstance(d["ts"], list)
        n = len(d["ts"]) if columns else 1
        # interned: every row of a sensor points at one string (json.loads makes a new one per record,
        # which was most of a processor's memory for its buffered days)
        self.sensor_id += [sys.intern(d["sensor_id"])] * n
        self.site += [sys.intern(d.get("site") or "")] * n
        self.source += [sys.intern(d.get("source") or "native")] * n
        self.received_at += [d.get("received_at") or 0] * n
        if not columns:
            d = {k: [v] for k, v in d.items() if k in ("ts", "seq", "lat", "lon")} | {
                "values": {name: [v] for name, v in d["values"].items()}}
        self.ts += d["ts"]
        for name in ("seq", "lat", "lon"):
            getattr(self, name).extend(d.get(name) or [None] * n)
        given = d["values"]
        for name, j in index.items():
            self.values[j].extend(given.get(name) or [None] * n)

    def batch(self, domain: str) -> ReadingBatch:
        n = len(self.ts)
        return ReadingBatch(
            domain=domain,
            sensor_id=np.array(self.sensor_id, dtype=object),
            site=np.array(self.site, dtype=object),
            ts=np.array(self.ts, np.int64).reshape(n),
            values=np.array(self.values, dtype=float).reshape(len(self.values), n).T.copy(),
            seq=np.array([-1 if v is None else v for v in self.seq], np.int64).reshape(n),
            lat=np.array(self.lat, dtype=float).reshape(n),
            lon=np.array(self.lon, dtype=float).reshape(n),
            source=np.array(self.source, dtype=object),
            received_at=np.array(self.received_at, np.int64).reshape(n),
        )


def _identity_of_record(d: Any, domain: str) -> str | None:
    """Why a record of either format cannot be this domain's rows: its ids become tags of raw lines,
    so they must be ids (a list or a newline would break the line protocol), and a record of another
    domain does not belong in this topic."""
    if not isinstance(d, dict):
        return "not a JSON object"
    if d.get("domain", domain) != domain:
        return f"domain {show(d.get('domain'))} in a {domain} topic"
    for key, required in (("sensor_id", True), ("site", False), ("source", False)):
        value = d.get(key)
        if (value is not None or required) and not (isinstance(value, str) and _is_id(value)):
            return f"{key} {show(value)} is not an id"
    return None


def _record_problem(d: dict[str, Any]) -> str | None:
    """Why a one-reading record cannot become a row (None when it can): the columns are int64 and float,
    so a record that someone else produced with a string ts or a 30-digit seq must not reach them."""
    for key, required in (("ts", True), ("seq", False), ("received_at", False)):
        value = d.get(key)
        if (value is not None or required) and (counter_problem(value) or value == 0 and key == "ts"):
            return f"{key} {show(value)} is not a positive int64"
    for key in ("lat", "lon"):
        if d.get(key) is not None and _coordinate_problem(d[key]):
            return f"{key} {show(d[key])} is not a finite number"
    values = d.get("values")
    if not isinstance(values, dict) or any(number_problem(v) for v in values.values()):
        return f"values {show(values)} are not numbers"
    return None


def _columns_problem(d: dict[str, Any]) -> str | None:
    """Why a column record cannot become rows (None when it can): every column as long as `ts`, every
    number inside the int64 / finite-float columns it is going to."""
    if d.get("received_at") is not None and counter_problem(d["received_at"]):
        return f"received_at {show(d['received_at'])} is not a positive int64"
    ts = d["ts"]
    if not ts or not all(type(t) is int and 0 < t <= INT64_MAX for t in ts):
        return f"ts {show(ts)} is not a list of positive int64"
    n = len(ts)
    values = d.get("values")
    if not isinstance(values, dict) or not all(isinstance(c, list) and len(c) == n for c in values.values()):
        return f"values {show(values)} are not columns as long as ts ({n})"
    if any(v is not None and number_problem(v) for c in values.values() for v in c):
        return f"values {show(values)} are not numbers"
    for key in ("seq", "lat", "lon"):
        column = d.get(key)
        if column is None:
            continue
        if not isinstance(column, list) or len(column) != n:
            return f"{key} {show(column)} is not a column as long as ts ({n})"
        check = counter_problem if key == "seq" else _coordinate_problem
        if any(v is not None and check(v) for v in column):
            return f"{key} {show(column)} holds a value that is not a {'positive int64' if key == 'seq' else 'finite number'}"
    return None


def _coordinate_problem(value: object) -> str | None:
    """Why a lat/lon cannot go into a float column (None when it can); number_problem refuses booleans."""
    return number_problem(value)


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
        _fill_row(matrix[row], raw, dom, index) for row, (_, _, raw) in enumerate(kept)]
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


@lru_cache(maxsize=65536)
def _is_id(value: str) -> bool:
    """An id (letters, digits, _ . : -; at most 64), remembered: a message's readings share their ids."""
    return _IDENT.fullmatch(value) is not None


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
        if not isinstance(value, str) or not _is_id(value):
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
        if problem := number_problem(value):
            return f"{what} {problem}"
        if not -limit <= value <= limit:
            return f"{what} {value} is outside -{limit}..{limit}"
    return None


def _fill_row(row: np.ndarray, raw: RawReading, dom: Domain, index: dict[str, int]) -> str | None:
    if not isinstance(raw.values, dict) or not raw.values:
        return "no values"
    for name, value in raw.values.items():
        j = index.get(name)
        if j is None:
            return f"unknown field {show(name)} for domain {dom.name} (known: {', '.join(dom.fields)})"
        if type(value) is bool and dom.unit(name) == "bool":
            value = float(value)  # a flag: true/false is its 1/0
        problem = number_problem(value)
        if problem:
            return f"field {name!r} {problem}{_flags_hint(dom) if type(value) is bool else ''}"
        unit = raw.units.get(name)
        if unit is not None:
            try:
                scale, offset = conversion(unit, dom.unit(name))
            except ValueError as exc:
                return f"field {name!r}: {exc}"
            value = value * scale + offset
        row[j] = value
    return None


@lru_cache(maxsize=64)
def _flags_hint(dom: Domain) -> str:
    """Which fields of a domain take true/false (its flags), for the reason refusing a boolean elsewhere."""
    flags = [f for f in dom.fields if dom.unit(f) == "bool"]
    return f": send the number; only a flag field takes true/false ({', '.join(flags)})" if flags else \
        f": send the number; domain {dom.name} has no flag field, so it takes no true/false"


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
    keys = list(zip(message.tolist(), sensors.tolist(), ts.tolist()))
    dup = np.zeros(len(keys), bool)
    if len(set(keys)) == len(keys):
        return dup  # the usual case: one set pass, no strings built
    seen: set[tuple] = set()
    for i, key in enumerate(keys):
        dup[i] = key in seen
        seen.add(key)
    return dup
