"""The plug-ins' history (processors/plugin.py `History`) read from InfluxDB: the one place where their
questions become Flux. Every name and tag value enters the query as an escaped string literal, so a
site called `a"b\\c` or `${x}` can neither break the query nor inject an expression into it."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from processors.plugin import Series, Tags, day_start, local_day

Query = Callable[[str], list[dict[str, Any]]]  # Flux in, rows out (`_time` as UTC ns): InfluxGateway.query

_FLUX_ESCAPES = {"\\": "\\\\", '"': '\\"', "${": "\\${", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TO_ESCAPE = re.compile(r'\\|"|\$\{|\n|\r|\t')


def flux_string(value: str) -> str:
    """`value` as a Flux string literal (backslash, quote, `${` and line breaks escaped)."""
    return '"' + _TO_ESCAPE.sub(lambda m: _FLUX_ESCAPES[m.group()], value) + '"'


def flux_any(column: str, values: Sequence[str]) -> str:
    """The predicate "`column` of `r` is one of `values`" (no values: nothing matches)."""
    if not values:
        return "false"
    return "(" + " or ".join(f"r[{flux_string(column)}] == {flux_string(v)}" for v in values) + ")"


def flux_filter(measurement: str, fields: Sequence[str], tags: Tags | None) -> str:
    """The predicate on `r`: this measurement, any of `fields`, and every tag at its value (or at one of
    its values)."""
    terms = [f"r._measurement == {flux_string(measurement)}", flux_any("_field", fields)]
    terms += [flux_any(k, [v] if isinstance(v, str) else v) for k, v in (tags or {}).items()]
    return " and ".join(terms)


class FluxHistory:
    """`History` over a bucket of InfluxDB through a query function (the service's InfluxGateway.query,
    which retries until InfluxDB answers)."""

    def __init__(self, query: Query, bucket: str) -> None:
        self.query = query
        self.bucket = bucket

    def flux(self, measurement: str, fields: Sequence[str], first_day: int, stop_day: int, tags: Tags | None,
             keep: Sequence[str], *, latest: bool = False, named: bool = False) -> str:
        """The query for points over local days [first_day, stop_day), i.e. from the UTC+8 midnight that
        starts `first_day` to the one that starts `stop_day`; with `latest`, only the last point per
        field and kept-tag combination."""
        columns = ", ".join(flux_string(c) for c in ("_time", "_value", *(("_field",) if latest or named else ()), *keep))
        return (f"from(bucket: {flux_string(self.bucket)}) "
                f"|> range(start: time(v: {int(day_start(first_day))}), stop: time(v: {int(day_start(stop_day))})) "
                f"|> filter(fn: (r) => {flux_filter(measurement, fields, tags)}) "
                f"|> keep(columns: [{columns}])" + (" |> last()" if latest else ""))

    def daily(self, measurement: str, field: str, first_day: int, stop_day: int, *, tags: Tags | None = None,
              keep: Sequence[str] = ("site",)) -> Series:
        """Every `measurement`/`field` point over local days [first_day, stop_day) matching `tags`."""
        return series(self.query(self.flux(measurement, [field], first_day, stop_day, tags, keep)), keep)

    def latest(self, measurement: str, fields: Sequence[str], first_day: int, stop_day: int, *,
               tags: Tags | None = None, keep: Sequence[str] = ("site",)) -> dict[str, Series]:
        """Per field, the last point of each combination of the `keep` tags over local days
        [first_day, stop_day) matching `tags` (every field asked for, in one query)."""
        rows = self.query(self.flux(measurement, fields, first_day, stop_day, tags, keep, latest=True))
        return {f: series([r for r in rows if r["_field"] == f], keep) for f in fields}

    def every(self, measurement: str, fields: Sequence[str], first_day: int, stop_day: int, *,
               tags: Tags | None = None, keep: Sequence[str] = ("site",)) -> dict[str, Series]:
        """Per field, every point over local days [first_day, stop_day) matching `tags` (one query)."""
        rows = self.query(self.flux(measurement, fields, first_day, stop_day, tags, keep, named=True))
        return {f: series([r for r in rows if r["_field"] == f], keep) for f in fields}


def series(rows: list[dict[str, Any]], keep: Sequence[str]) -> Series:
    """Query rows as columns: local day of `_time`, `_value` as float, each kept tag as str ("" if absent)."""
    ts = np.array([int(r["_time"]) for r in rows], np.int64)
    return Series(local_day(ts), np.array([float(r["_value"]) for r in rows], float),
                  {k: np.array([str(r.get(k) or "") for r in rows], str) for k in keep}, ts)
