"""The one in-memory fake of the plug-ins' `History` (processors/plugin.py) for unit tests: it holds
InfluxDB points, so a test can hand a plug-in what it or another one wrote earlier."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from infra.lineprotocol import Point
from processors.plugin import Series, Tags, day_start, local_day


@dataclass
class MemoryHistory:
    """`History` over `points`, with the query semantics of FluxHistory: local-day range, tag filters,
    rows grouped by the kept tags and time-ordered within a group."""

    points: list[Point] = field(default_factory=list)

    def daily(self, measurement: str, field: str, first_day: int, stop_day: int, *, tags: Tags | None = None,
              keep: Sequence[str] = ("site",)) -> Series:
        """Every `measurement`/`field` point over local days [first_day, stop_day) matching `tags`."""
        return self._series(self._match(measurement, field, first_day, stop_day, tags, keep), field, keep)

    def latest(self, measurement: str, fields: Sequence[str], first_day: int, stop_day: int, *,
               tags: Tags | None = None, keep: Sequence[str] = ("site",)) -> dict[str, Series]:
        """Per field, the last point of each combination of the `keep` tags."""
        out = {}
        for f in fields:
            last = {tuple(p.tags.get(k, "") for k in keep): p
                    for p in self._match(measurement, f, first_day, stop_day, tags, keep)}
            out[f] = self._series(list(last.values()), f, keep)
        return out

    def every(self, measurement: str, fields: Sequence[str], first_day: int, stop_day: int, *,
               tags: Tags | None = None, keep: Sequence[str] = ("site",)) -> dict[str, Series]:
        """Per field, every point over the days (as `daily`, one field after the other)."""
        return {f: self.daily(measurement, f, first_day, stop_day, tags=tags, keep=keep) for f in fields}

    def _match(self, measurement: str, field: str, first_day: int, stop_day: int, tags: Tags | None,
               keep: Sequence[str]) -> list[Point]:
        start, stop = int(day_start(first_day)), int(day_start(stop_day))
        wanted = {k: [v] if isinstance(v, str) else list(v) for k, v in (tags or {}).items()}
        found = [p for p in self.points
                 if p.measurement == measurement and p.fields.get(field) is not None and start <= p.ts < stop
                 and all(p.tags.get(k) in vs for k, vs in wanted.items())]
        return sorted(found, key=lambda p: (tuple(p.tags.get(k, "") for k in keep), p.ts))

    @staticmethod
    def _series(points: list[Point], field: str, keep: Sequence[str]) -> Series:
        ts = np.array([p.ts for p in points], np.int64)
        return Series(local_day(ts), np.array([float(p.fields[field]) for p in points]),
                      {k: np.array([p.tags.get(k, "") for p in points], str) for k in keep}, ts)
