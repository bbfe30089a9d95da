"""Window state: what a domain keeps of its open days, bounded by the windows that are open, not by
the readings that arrived.

A domain's state (`WindowState`) is a set of parts its plug-in declares (`DomainProcessor.new_state`):
running sums per (sensor, site, window) (`Sums`), the reading nearest a time of day per (sensor,
site, day) (`Nearest`), or, where a rule needs the readings themselves and they are few, those
readings' few columns (`Rows`: fire detections, garbage bin fill levels). Every part is keyed by
sensor, so the sensors of a partition that moves to another processor leave it exactly (`drop`).

Idempotence: at-least-once delivery repeats readings (MQTT redelivery, a replay after a crash or a
rebalance). A repeated (sensor, ts) counts once: `Seen` keeps the (sensor, ts) of every reading of the
open days, 8 bytes each in sorted arrays per local hour (a per-sensor last (ts, seq) would not do: a
late reading is older than the last one seen and still new). The first copy counts (a redelivery
carries the same values).

Exactness: sums are of values rounded to multiples of 2**-20 (QUANTUM; below 1e-6 of a reading), so
every partial sum is exact in float64 up to ~8.6e9 and a window's sum does not depend on how its
readings were split over polls, replays or processors: restart and rebalance give the same digits.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from processors.plugin import DAY_NS, HOUR_NS, day_start, hour_start, local_day, site_groups
from schemas.batch import ReadingBatch

QUANTUM = 2.0 ** -20
_TS_BITS = 42            # ns within an hour: < 2**42
_MAX_SENSORS = 2 ** 21   # sensor codes per domain and processor in a `Seen` key


def quantized(values: np.ndarray) -> np.ndarray:
    """Values rounded to multiples of QUANTUM (NaN stays NaN): sums of them are exact and order-free."""
    return np.round(np.asarray(values, float) / QUANTUM) * QUANTUM


def day_window(ts: np.ndarray) -> np.ndarray:
    """UTC ns of the local midnight starting each timestamp's local day (a daily window's start)."""
    return day_start(local_day(ts))


class Seen:
    """(sensor code, ts) of the readings counted in the open windows, per local hour as sorted int64
    keys (code << 42 | ns within the hour)."""

    def __init__(self) -> None:
        self.hours: dict[int, np.ndarray] = {}

    def fresh(self, code: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Mark the readings seen; the row indices (ascending) of those not seen before (within the
        rows too, the first copy counts)."""
        if len(code) and int(code.max()) >= _MAX_SENSORS:
            raise ValueError(f"{int(code.max()) + 1} sensors in one domain's state: at most {_MAX_SENSORS} "
                             "fit a Seen key; split the domain over more processors")
        hours = hour_start(ts)
        keys = (code.astype(np.int64) << _TS_BITS) | (ts - hours)
        keep: list[np.ndarray] = []
        for hour in np.unique(hours).tolist():
            rows = np.flatnonzero(hours == hour)
            uniq, first = np.unique(keys[rows], return_index=True)
            known = self.hours.get(hour)
            if known is not None and len(known):
                at = np.minimum(np.searchsorted(known, uniq), len(known) - 1)
                new = known[at] != uniq
                uniq, first = uniq[new], first[new]
                self.hours[hour] = np.sort(np.concatenate([known, uniq]), kind="mergesort")
            else:
                self.hours[hour] = uniq
            keep.append(rows[first])
        return np.sort(np.concatenate(keep)) if keep else np.empty(0, np.int64)

    def evict(self, oldest_day: int) -> None:
        for hour in [h for h in self.hours if int(local_day(np.array([h]))[0]) < oldest_day]:
            del self.hours[hour]

    def drop(self, codes: np.ndarray) -> None:
        for hour, keys in self.hours.items():
            self.hours[hour] = keys[~np.isin(keys >> _TS_BITS, codes)]

    def span(self) -> tuple[int, int] | None:
        """(oldest, newest) local day holding readings, None when empty."""
        held = [h for h, keys in self.hours.items() if len(keys)]
        if not held:
            return None
        return int(local_day(np.array([min(held)]))[0]), int(local_day(np.array([max(held)]))[0])

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes for k in self.hours.values())


class Part(Protocol):
    """One piece of a domain's state: fed the new (unseen) readings with their sensor codes."""

    def add(self, batch: ReadingBatch, code: np.ndarray) -> None: ...

    def evict(self, oldest_day: int) -> None: ...

    def drop(self, codes: np.ndarray) -> None: ...

    @property
    def nbytes(self) -> int: ...


@dataclass
class SiteWindows:
    """Sums over the sensors of each (site, window start), pairs sorted by site then start."""

    pairs: list[tuple[str, int]]
    sums: np.ndarray      # [pairs, columns] of present values
    counts: np.ndarray    # [pairs, columns] present values
    maxima: np.ndarray    # [pairs, columns] (-inf: none present)
    readings: np.ndarray  # [pairs] readings (present or not)

    def means(self) -> np.ndarray:
        """NaN-aware means [pairs, columns]."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.maximum(self.counts, 1), np.nan)


class Sums:
    """Running sums and counts of present values, maxima and readings, per (sensor, site, window start)
    of `columns(batch)` over the rows `select(batch)` picks (all by default)."""

    def __init__(self, window: Callable[[np.ndarray], np.ndarray], columns: Callable[[ReadingBatch], np.ndarray],
                 select: Callable[[ReadingBatch], np.ndarray] | None = None) -> None:
        self.window, self.columns, self.select = window, columns, select
        self.index: dict[tuple[int, str, int], int] = {}
        self.sensor = np.empty(0, np.int64)
        self.site = np.empty(0, object)
        self.start = np.empty(0, np.int64)
        self.sums = self.counts = self.maxima = None   # [rows, columns], allocated with the first readings
        self.readings = np.empty(0, np.int64)

    def add(self, batch: ReadingBatch, code: np.ndarray) -> None:
        if self.select is not None:
            mask = self.select(batch)
            batch, code = batch.take(mask), code[mask]
        if not len(batch):
            return
        values = np.asarray(self.columns(batch), float)
        start = self.window(batch.ts)
        _, site = np.unique(batch.site.astype(str), return_inverse=True)
        pairs, first, inverse = np.unique(np.stack([code, site.astype(np.int64), start], axis=1), axis=0,
                                          return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        sites = batch.site[first].tolist()
        rows = np.array([self._row(int(c), s, int(t)) for (c, _, t), s in zip(pairs.tolist(), sites)], np.int64)
        if self.sums is None or len(self.index) > len(self.sensor):
            self._grow(values.shape[1])
        u = len(pairs)
        present = ~np.isnan(values)
        q = np.where(present, quantized(values), 0.0)
        self.sums[rows] += np.stack([np.bincount(inverse, q[:, j], u) for j in range(values.shape[1])], axis=1)
        self.counts[rows] += np.stack([np.bincount(inverse, present[:, j], u) for j in range(values.shape[1])],
                                      axis=1).astype(np.int64)
        top = np.full((u, values.shape[1]), -np.inf)
        np.maximum.at(top, inverse, np.where(present, values, -np.inf))
        self.maxima[rows] = np.maximum(self.maxima[rows], top)
        self.readings[rows] += np.bincount(inverse, minlength=u)

    def _row(self, code: int, site: str, start: int) -> int:
        return self.index.setdefault((code, site, start), len(self.index))

    def _grow(self, k: int) -> None:
        """Arrays for the rows the index has numbered but the arrays do not hold yet."""
        extra = len(self.index) - len(self.sensor)
        keys = list(self.index)[len(self.sensor):]
        self.sensor = np.concatenate([self.sensor, np.array([c for c, _, _ in keys], np.int64)])
        self.site = np.concatenate([self.site, np.array([s for _, s, _ in keys], object)])
        self.start = np.concatenate([self.start, np.array([t for _, _, t in keys], np.int64)])
        if self.sums is None:
            self.sums, self.counts, self.maxima = np.zeros((0, k)), np.zeros((0, k), np.int64), np.full((0, k), -np.inf)
        self.sums = np.concatenate([self.sums, np.zeros((extra, k))])
        self.counts = np.concatenate([self.counts, np.zeros((extra, k), np.int64)])
        self.maxima = np.concatenate([self.maxima, np.full((extra, k), -np.inf)])
        self.readings = np.concatenate([self.readings, np.zeros(extra, np.int64)])

    def _keep(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        self.sensor, self.site, self.start = self.sensor[keep], self.site[keep], self.start[keep]
        self.sums, self.counts, self.maxima = self.sums[keep], self.counts[keep], self.maxima[keep]
        self.readings = self.readings[keep]
        self.index = {(int(c), s, int(t)): i for i, (c, s, t) in
                      enumerate(zip(self.sensor.tolist(), self.site.tolist(), self.start.tolist()))}

    def evict(self, oldest_day: int) -> None:
        if self.sums is not None:
            self._keep(local_day(self.start) >= oldest_day)

    def drop(self, codes: np.ndarray) -> None:
        if self.sums is not None:
            self._keep(~np.isin(self.sensor, codes))

    def site_windows(self, days: np.ndarray) -> SiteWindows:
        """The windows starting on local `days`, summed over each site's sensors."""
        if self.sums is None:
            return SiteWindows([], np.zeros((0, 0)), np.zeros((0, 0), np.int64), np.zeros((0, 0)), np.zeros(0, np.int64))
        rows = np.flatnonzero(np.isin(local_day(self.start), days))
        pairs, inverse = site_groups(self.site[rows], self.start[rows])
        u, k = len(pairs), self.sums.shape[1]
        sums = np.stack([np.bincount(inverse, self.sums[rows, j], u) for j in range(k)], axis=1) if k else np.zeros((u, 0))
        counts = np.zeros((u, k), np.int64)
        np.add.at(counts, inverse, self.counts[rows])
        maxima = np.full((u, k), -np.inf)
        np.maximum.at(maxima, inverse, self.maxima[rows])
        return SiteWindows(pairs, sums, counts, maxima, np.bincount(inverse, self.readings[rows], u).astype(np.int64))

    def sites(self) -> set[str]:
        return set(self.site.tolist())

    @property
    def nbytes(self) -> int:
        arrays = [self.sensor, self.site, self.start, self.readings, *(a for a in (self.sums, self.counts, self.maxima)
                                                                        if a is not None)]
        return sum(a.nbytes for a in arrays) + 200 * len(self.index)


class Nearest:
    """Per (sensor, site, local day): the reading nearest `offset` ns after local midnight, within
    `within` ns, among the rows `select(batch)` picks; ties go to the earlier reading, then the
    sensor id, so the choice does not depend on arrival order. Keeps `columns` of it."""

    def __init__(self, offset: int, within: int, columns: tuple[str, ...],
                 select: Callable[[ReadingBatch], np.ndarray]) -> None:
        self.offset, self.within, self.columns, self.select = offset, within, columns, select
        self.best: dict[tuple[int, str, int], tuple[int, int, str, tuple[float, ...]]] = {}

    def add(self, batch: ReadingBatch, code: np.ndarray) -> None:
        day = local_day(batch.ts)
        distance = np.abs(batch.ts - (day_start(day) + self.offset))
        rows = np.flatnonzero(self.select(batch) & (distance <= self.within))
        if not len(rows):
            return
        cols = [batch.fields.index(c) for c in self.columns]
        _, site = np.unique(batch.site[rows].astype(str), return_inverse=True)
        order = rows[np.lexsort((batch.ts[rows], distance[rows], day[rows], site.reshape(-1), code[rows]))]
        group = np.stack([code[order], day[order]], axis=1)
        head = np.ones(len(order), bool)   # the best row of each (sensor, site, day) of the batch
        head[1:] = (group[1:] != group[:-1]).any(axis=1) | (batch.site[order][1:] != batch.site[order][:-1])
        for i in order[head].tolist():
            key = (int(code[i]), str(batch.site[i]), int(day[i]))
            candidate = (int(distance[i]), int(batch.ts[i]), str(batch.sensor_id[i]),
                         tuple(float(batch.values[i, c]) for c in cols))
            held = self.best.get(key)
            if held is None or candidate[:2] < held[:2]:
                self.best[key] = candidate

    def evict(self, oldest_day: int) -> None:
        self.best = {k: v for k, v in self.best.items() if k[2] >= oldest_day}

    def drop(self, codes: np.ndarray) -> None:
        gone = set(codes.tolist())
        self.best = {k: v for k, v in self.best.items() if k[0] not in gone}

    def per_site(self) -> dict[tuple[str, int], tuple[float, ...]]:
        """(site, local day) -> the `columns` of the best reading over the site's sensors."""
        out: dict[tuple[str, int], tuple[int, int, str, tuple[float, ...]]] = {}
        for (_, site, day), candidate in self.best.items():
            held = out.get((site, day))
            if held is None or candidate[:3] < held[:3]:
                out[(site, day)] = candidate
        return {k: v[3] for k, v in out.items()}

    def sites(self) -> set[str]:
        return {site for _, site, _ in self.best}

    @property
    def nbytes(self) -> int:
        return 400 * len(self.best)


class Rows:
    """The rows `select(batch)` picks, `columns` of them only: for rules that need the readings
    themselves and whose readings are few (events, a bin's fill levels)."""

    def __init__(self, columns: tuple[str, ...], select: Callable[[ReadingBatch], np.ndarray]) -> None:
        self.columns, self.select = columns, select
        self.code = np.empty(0, np.int64)
        self.sensor = np.empty(0, object)
        self.site = np.empty(0, object)
        self.ts = np.empty(0, np.int64)
        self.values = np.empty((0, len(columns)))

    def add(self, batch: ReadingBatch, code: np.ndarray) -> None:
        rows = np.flatnonzero(self.select(batch))
        if not len(rows):
            return
        cols = [batch.fields.index(c) for c in self.columns]
        self.code = np.concatenate([self.code, code[rows]])
        self.sensor = np.concatenate([self.sensor, batch.sensor_id[rows]])
        self.site = np.concatenate([self.site, batch.site[rows]])
        self.ts = np.concatenate([self.ts, batch.ts[rows]])
        self.values = np.concatenate([self.values, batch.values[np.ix_(rows, cols)]])

    def _keep(self, keep: np.ndarray) -> None:
        self.code, self.sensor, self.site = self.code[keep], self.sensor[keep], self.site[keep]
        self.ts, self.values = self.ts[keep], self.values[keep]

    def evict(self, oldest_day: int) -> None:
        self._keep(local_day(self.ts) >= oldest_day)

    def drop(self, codes: np.ndarray) -> None:
        self._keep(~np.isin(self.code, codes))

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]

    def sites(self) -> set[str]:
        return set(self.site.tolist())

    @property
    def nbytes(self) -> int:
        return self.code.nbytes + self.ts.nbytes + self.values.nbytes + 16 * len(self.ts)


class WindowState:
    """A domain's open days: the parts its plug-in declared, fed each reading once, for the last
    `horizon_days` local days (relative to the newest reading)."""

    def __init__(self, domain: str, horizon_days: int, **parts: Part) -> None:
        self.domain, self.horizon_days, self.parts = domain, horizon_days, parts
        self.seen = Seen()
        self._codes: dict[str, int] = {}

    def __getattr__(self, name: str) -> Part:
        parts = self.__dict__.get("parts", {})
        if name in parts:
            return parts[name]
        raise AttributeError(name)

    def _code(self, sensors: np.ndarray) -> np.ndarray:
        codes = self._codes
        return np.fromiter(map(lambda s: codes.setdefault(s, len(codes)), sensors.tolist()), np.int64, len(sensors))

    def add(self, batch: ReadingBatch) -> ReadingBatch:
        """Feed the readings not seen before to every part, drop days past the horizon; returns them."""
        if not len(batch):
            return batch
        code = self._code(batch.sensor_id)
        fresh = self.seen.fresh(code, batch.ts)
        new, code = batch.take(fresh), code[fresh]
        if len(new):
            for part in self.parts.values():
                part.add(new, code)
        span = self.seen.span()
        if span is not None and span[0] < span[1] - self.horizon_days + 1:
            oldest = span[1] - self.horizon_days + 1
            self.seen.evict(oldest)
            for part in self.parts.values():
                part.evict(oldest)
        return new

    def drop(self, sensors: list[str]) -> None:
        """Forget `sensors` (their partition went to another processor)."""
        codes = np.array([self._codes[s] for s in sensors if s in self._codes], np.int64)
        if len(codes):
            self.seen.drop(codes)
            for part in self.parts.values():
                part.drop(codes)

    def oldest_day(self) -> int | None:
        span = self.seen.span()
        return None if span is None else span[0]

    def newest_day(self) -> int | None:
        span = self.seen.span()
        return None if span is None else span[1]

    def sites(self) -> set[str]:
        """Every site with a reading in the open days."""
        return set().union(*(p.sites() for p in self.parts.values()))

    @property
    def nbytes(self) -> int:
        """About what the state holds in memory (arrays and index entries)."""
        return self.seen.nbytes + sum(p.nbytes for p in self.parts.values())


__all__ = ["DAY_NS", "HOUR_NS", "QUANTUM", "Nearest", "Rows", "Seen", "SiteWindows", "Sums", "WindowState",
           "day_window", "hour_start", "quantized"]
