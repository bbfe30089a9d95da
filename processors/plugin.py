"""The processor plug-in contract: a domain turns buffered readings into compliance points and alert
observations. Plug-ins compute; the service (processors/service.py) moves data. Event-time windows
are local (UTC+8) hours and days. A plug-in declares its state (`new_state`: running aggregates per
sensor and window, processors/buffer.py), never every reading; a window's result is recomputed from
that state whenever a reading lands in it, so late and out-of-order readings land in the right window
and writing the result again is harmless."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from infra.lineprotocol import Point, escape  # noqa: F401 - part of the plug-in contract
from processors.outlook import seasonal_profile
from schemas.batch import ReadingBatch
from schemas.sites import load_registry
from schemas.thresholds import DAY_NS, LOCAL_OFFSET_NS, PlanThresholds

if TYPE_CHECKING:
    from processors.buffer import WindowState

HOUR_NS = 3600 * 10**9
PROFILE_YEARS = 3          # past years read for a seasonal profile
PROFILE_MIN_DAYS = 300     # fewer distinct past days than this: no seasonal profile (flat projection)


def local_day(ts: np.ndarray) -> np.ndarray:
    """Local (UTC+8) day number of UTC ns timestamps."""
    return (np.asarray(ts, np.int64) + LOCAL_OFFSET_NS) // DAY_NS


def day_start(day: np.ndarray | int) -> np.ndarray:
    """UTC ns of the local midnight that starts `day`."""
    return np.asarray(day, np.int64) * DAY_NS - LOCAL_OFFSET_NS


def hour_start(ts: np.ndarray) -> np.ndarray:
    return (np.asarray(ts, np.int64) // HOUR_NS) * HOUR_NS


def by_local_day(ts: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(UTC ns of the local midnight, row indices) for each local day in `ts`: the unit in which plan
    entries are picked, so every row is judged by the entry in force on its own local day."""
    days = local_day(ts)
    for day in np.unique(days):
        yield int(day_start(day)), np.flatnonzero(days == day)


def day_of_year(days: np.ndarray) -> np.ndarray:
    """0-based day of the year of local day numbers."""
    d = np.asarray(days, np.int64).astype("datetime64[D]")
    return (d - d.astype("datetime64[Y]")).astype(np.int64)


def year_ends(days: np.ndarray) -> list[int]:
    """The latest of `days` in each calendar year they touch: where year-to-date indicators are due (a
    batch spanning New Year closes the old year and opens the new one)."""
    d = np.asarray(days, np.int64)
    years = d.astype("datetime64[D]").astype("datetime64[Y]")
    return [int(d[years == y].max()) for y in np.unique(years)]


def local_year(day: int) -> tuple[int, int]:
    """(local day number of 1 January, number of days) of the year that contains local day `day`."""
    year = np.datetime64(int(day), "D").astype("datetime64[Y]")
    first = int(year.astype("datetime64[D]").astype(np.int64))
    return first, int((year + 1).astype("datetime64[D]").astype(np.int64)) - first


@dataclass
class Observation:
    """One rule evaluated for one entity and window: the alert router turns these into alerts."""

    rule: str
    entity: str
    domain: str
    site: str
    severity: str
    value: float
    threshold: float
    breach: bool
    ts: int
    title_en: str
    title_zh: str
    target: str = ""

    def key(self) -> bytes:
        return f"{self.rule}/{self.entity}".encode()

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in self.__dict__.items()}


@dataclass
class Output:
    """What a plug-in computed for one batch."""

    points: list[Point] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)


@dataclass(frozen=True)
class Series:
    """Points read back from earlier results, as columns: their local day, value and the kept tags
    (tag -> str array, "" where a point lacks the tag), time-ordered within each tag combination;
    `ts`: their UTC ns times."""

    days: np.ndarray
    values: np.ndarray
    tags: dict[str, np.ndarray]
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


Tags = Mapping[str, str | Sequence[str]]  # tag -> the value, or any of the values, a point must carry


class History(Protocol):
    """Read access to the results already in the compliance bucket, for long-horizon indicators
    (recomputed from earlier aggregates). Plug-ins pass values, never query text."""

    def daily(self, measurement: str, field: str, first_day: int, stop_day: int, *, tags: Tags | None = None,
              keep: Sequence[str] = ("site",)) -> Series:
        """Every `measurement`/`field` point over local days [first_day, stop_day) matching `tags`."""

    def latest(self, measurement: str, fields: Sequence[str], first_day: int, stop_day: int, *,
               tags: Tags | None = None, keep: Sequence[str] = ("site",)) -> dict[str, Series]:
        """Per field, the last point of each combination of the `keep` tags over local days
        [first_day, stop_day) matching `tags` (every field asked for; empty where it has no point)."""

    def every(self, measurement: str, fields: Sequence[str], first_day: int, stop_day: int, *,
               tags: Tags | None = None, keep: Sequence[str] = ("site",)) -> dict[str, Series]:
        """Per field, every point over local days [first_day, stop_day) matching `tags` (one query)."""


class DomainProcessor(ABC):
    """A domain's indicators. `horizon_days`: how many local days back windows stay open (the
    service keeps that much in its buffer and replays it from Kafka on restart)."""

    domain: str
    horizon_days: int = 2
    # what a silent sensor of this domain counts against: the `target` of its `<domain>.offline` alerts
    offline_target: str = "data completeness: every registered sensor reporting"

    def __init__(self, plan: PlanThresholds, history: History) -> None:
        self.plan = plan
        self.history = history
        self._profiles: dict[tuple[str, str, int, str], np.ndarray | None] = {}
        load_registry()  # an operator registry (SMARTCITY_SITES) with a mistake fails at start, naming the file

    @abstractmethod
    def new_state(self) -> "WindowState":
        """An empty state of the domain's open days: what it holds, and why that is enough, is written
        next to each plug-in's declaration."""

    @abstractmethod
    def windows(self, state: "WindowState", days: np.ndarray) -> Output:
        """Indicators for the local `days` touched by the latest batch, from the domain's state."""

    def district(self, days: np.ndarray, fresh: Sequence[Point] = ()) -> Output:
        """The second stage: district figures of local `days` from every site's results, read from the
        compliance bucket (`history`) and overlaid by `fresh` (site results not written yet). Site
        results come from whichever processor owns the site; this runs once they are written (the
        service's district stage, processors/service.py). Domains without district figures: none."""
        return Output()

    def site_points(self, measurement: str, fields: Sequence[str], first_day: int, stop_day: int,
                    fresh: Sequence[Point] = (), keep: Sequence[str] = ("site",)) -> dict[tuple, dict[str, float]]:
        """(kept tag values..., ts) -> {field: value} of every `measurement` point over local days
        [first_day, stop_day): the stored ones, then `fresh` over them (numbers only, NaN left out)."""
        found: dict[tuple, dict[str, float]] = {}
        for name, s in self.history.every(measurement, fields, first_day, stop_day, keep=keep).items():
            for i, (t, v) in enumerate(zip(s.ts.tolist(), s.values.tolist())):
                found.setdefault((*(str(s.tags[k][i]) for k in keep), int(t)), {})[name] = float(v)
        low, high = int(day_start(first_day)), int(day_start(stop_day))
        for p in fresh:
            if p.measurement == measurement and low <= p.ts < high:
                row = found.setdefault((*(str(p.tags.get(k, "")) for k in keep), int(p.ts)), {})
                row.update({f: float(v) for f, v in p.fields.items() if f in fields and isinstance(v, (int, float))
                            and not isinstance(v, bool) and v == v})
        return found

    def year_to_date_days(self, days: np.ndarray, measurement: str, field: str, extra: Sequence[int] = (),
                          tags: Tags | None = None) -> list[int]:
        """The days whose year-to-date figures a change on local `days` moves: per year, every day with
        `measurement`/`field` results (stored, or in `extra`) from the earliest of `days` in that year on,
        since a late day changes every later day's year so far. Computed at all of them, the figures do
        not depend on the order in which the days came (one processor or several); live, it is one day."""
        found: list[int] = []
        for year in sorted({local_year(int(d))[0] for d in days}):
            first, length = local_year(year)
            noticed = [int(d) for d in days if first <= d < first + length]
            stored = self.history.daily(measurement, field, first, first + length, tags=tags)
            have = {*stored.days.tolist(), *(int(d) for d in extra), *noticed}
            found += sorted(d for d in have if min(noticed) <= d < first + length)
        return found

    def compute(self, readings: ReadingBatch, days: np.ndarray) -> Output:
        """Both stages for local `days` from readings alone (a test's batch, the domain docs' example):
        a fresh state, its windows, then the district figures over the windows' results."""
        state = self.new_state()
        state.add(readings)
        out = self.windows(state, days)
        extra = self.district(days, out.points)
        return Output(out.points + extra.points, out.observations + extra.observations)

    def past_profile(self, measurement: str, field: str, year_first_day: int,
                     tags: Tags | None = None) -> np.ndarray | None:
        """Seasonal profile (366 days) of the PROFILE_YEARS years before the year starting on local day
        `year_first_day`, or None with less than PROFILE_MIN_DAYS days of history. Past years do not
        change while a year runs: read once per process (a restart reads it again, same answer)."""
        key = (measurement, field, year_first_day, repr(sorted((tags or {}).items())))
        if key not in self._profiles:
            past = self.history.daily(measurement, field, year_first_day - 366 * PROFILE_YEARS, year_first_day,
                                      tags=tags)
            self._profiles[key] = (seasonal_profile(day_of_year(past.days), past.values)
                                   if len(np.unique(past.days)) >= PROFILE_MIN_DAYS else None)
        return self._profiles[key]


def factorize(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct labels sorted, each row's index into them), like np.unique(return_inverse=True) but
    without sorting every row: strings are numbered in one dict pass (~10x faster on a day's buffer)."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iub":
        return np.unique(labels, return_inverse=True)
    seen: dict[object, int] = {}
    codes = np.fromiter(map(lambda v: seen.setdefault(v, len(seen)), labels.tolist()), np.int64, len(labels))
    uniq = np.array(list(seen), dtype=labels.dtype if labels.dtype.kind == "U" else object)
    order = np.argsort(uniq, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[codes]


def site_groups(sites: np.ndarray, buckets: np.ndarray) -> tuple[list[tuple[str, int]], np.ndarray]:
    """The distinct (site, time bucket) pairs of the rows, sorted, and each row's pair index: the
    windows of a site-level indicator (buckets: hour or day starts)."""
    names, site = factorize(sites)
    starts, bucket = np.unique(np.asarray(buckets, np.int64), return_inverse=True)
    pairs, inverse = np.unique(site * max(len(starts), 1) + bucket, return_inverse=True)
    return list(zip(names[pairs // max(len(starts), 1)].tolist(), starts[pairs % max(len(starts), 1)].tolist())), inverse


def means_of(inverse: np.ndarray, groups: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(NaN-aware means [groups, fields], counts [groups, fields]) of `values` rows by group index."""
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    sums = np.stack([np.bincount(inverse, filled[:, j], groups) for j in range(values.shape[1])], axis=1)
    counts = np.stack([np.bincount(inverse, present[:, j], groups) for j in range(values.shape[1])], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), counts


def group_means(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique keys, NaN-aware means [k, fields], counts [k, fields]) of `values` rows grouped by key."""
    uniq, inverse = factorize(keys)
    return (uniq, *means_of(inverse, len(uniq), values))


def bounded_share(numerator: np.ndarray, denominator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(numerator / denominator clipped to [0, 1], NaN where the denominator is not positive; True where
    the inputs were inconsistent: a negative part, or more in the part than in the whole). A rate of
    the plan can neither flatter (above 100%) nor go negative; the flag keeps the reason visible."""
    num, den = np.asarray(numerator, float), np.asarray(denominator, float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ok = den > 0
        raw = np.where(ok, num / np.where(ok, den, 1.0), np.nan)
        inconsistent = ok & ((num < 0) | (num > den))
    return np.clip(raw, 0.0, 1.0), inconsistent


def indicator(domain: str, name: str, scope: str, value: float, ts: int, *, target: float | None = None,
              source: str = "", **extra: Any) -> Point:
    """A plan indicator point: value against target, tagged with where the target comes from."""
    return Point("indicator", {"domain": domain, "indicator": name, "scope": scope, "source": source},
                 {"value": value, "target": target, **extra}, ts)

