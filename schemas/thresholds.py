"""The plan-threshold file: load, validate, override, and pick the entry in force on a reading's LOCAL
(UTC+8, Asia/Shanghai) day: the plan and the standards are Chinese, so a day starts at local midnight."""
from __future__ import annotations

import datetime as dt
import os
import tomllib
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

DEFAULT_FILE = Path(__file__).with_name("plan.toml")
LOCAL_TZ = dt.timezone(dt.timedelta(hours=8), "UTC+8")
LOCAL_OFFSET_NS = 8 * 3600 * 10**9
DAY_NS = 86400 * 10**9


class Threshold(BaseModel):
    """One target or limit (or one breakpoint row), with its unit, source and validity."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    key: str = Field(pattern=r"^[A-Za-z0-9_.]+$")
    value: float | tuple[float, ...]
    unit: str
    source: str = Field(min_length=3, description="plan line or standard clause")
    valid_from: dt.date = Field(alias="from")
    valid_to: dt.date | None = Field(None, alias="to", description="last day in force; None: still in force")

    @model_validator(mode="after")
    def _range(self) -> "Threshold":
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError(f"{self.key}: 'to' {self.valid_to} is before 'from' {self.valid_from}")
        return self

    def in_force(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def array(self) -> np.ndarray:
        return np.atleast_1d(np.asarray(self.value, dtype=float))


class PlanThresholds(BaseModel):
    """All thresholds; at most one entry per key is in force on any day."""

    version: str
    threshold: list[Threshold]
    _by_key: dict[str, list[Threshold]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _no_overlap(self) -> "PlanThresholds":
        by_key: dict[str, list[Threshold]] = {}
        for t in self.threshold:
            by_key.setdefault(t.key, []).append(t)
        for key, entries in by_key.items():
            entries.sort(key=lambda t: t.valid_from)
            for a, b in zip(entries, entries[1:]):
                if a.valid_to is None or a.valid_to >= b.valid_from:
                    raise ValueError(f"{key}: entries from {a.valid_from} and {b.valid_from} overlap; "
                                     f"give the first a 'to' before {b.valid_from}")
        self._by_key = by_key
        return self

    def get(self, key: str, at: dt.date | dt.datetime | int | np.integer) -> Threshold:
        """The entry for `key` in force on the local (UTC+8) day of `at`: a date (already local), an aware
        datetime, or a UTC ns timestamp. `at` is required: a reading is judged by its own day, never today's."""
        day = local_date(at)
        candidates = self._by_key.get(key, [])
        if not candidates:
            raise KeyError(f"no threshold {key!r} in the plan file")
        for t in candidates:
            if t.in_force(day):
                return t
        raise KeyError(f"threshold {key!r} is not in force on {day} (entries: "
                       + ", ".join(f"{t.valid_from}..{t.valid_to or ''}" for t in candidates) + ")")

    def value(self, key: str, at: dt.date | dt.datetime | int | np.integer) -> float:
        value = self.get(key, at).value
        if isinstance(value, tuple):
            raise TypeError(f"{key} is a table row; use get(...).array()")
        return value

    def merged(self, override: "PlanThresholds") -> "PlanThresholds":
        """This file with an operator's entries replacing same key + from, and adding new ones."""
        keep = {(t.key, t.valid_from): t for t in self.threshold}
        keep.update({(t.key, t.valid_from): t for t in override.threshold})
        return PlanThresholds(version=f"{self.version}+{override.version}", threshold=list(keep.values()))


def local_date(at: dt.date | dt.datetime | int | np.integer) -> dt.date:
    """The local (UTC+8) calendar day of a UTC ns timestamp or an aware datetime; a date is taken as local.

    Integer arithmetic on ns (no float rounding at midnight). A naive datetime is refused: it has no
    clock, and guessing one is how a reading at 00:30 local ends up judged by yesterday's rule."""
    if isinstance(at, (int, np.integer)) and not isinstance(at, bool):
        return dt.date(1970, 1, 1) + dt.timedelta(days=(int(at) + LOCAL_OFFSET_NS) // DAY_NS)
    if isinstance(at, dt.datetime):
        if at.tzinfo is None:
            raise ValueError(f"naive datetime {at.isoformat()}: give it a timezone (UTC or UTC+8) "
                             "so the plan entry of its local day can be picked")
        return at.astimezone(LOCAL_TZ).date()
    if isinstance(at, dt.date):
        return at
    raise TypeError(f"cannot tell the local day of {at!r} ({type(at).__name__}); pass a UTC ns timestamp, "
                    "an aware datetime or a local date")


def today() -> dt.date:
    """Today's local (UTC+8) date: for views of 'now' (the wall, the dashboards' generated targets)."""
    return dt.datetime.now(LOCAL_TZ).date()


def read_file(path: Path) -> PlanThresholds:
    """Parse and validate one threshold file; errors name the file."""
    try:
        with open(path, "rb") as fh:
            return PlanThresholds.model_validate(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise ValueError(f"threshold file {path}: {exc}") from exc


@lru_cache(maxsize=4)
def load_plan(path: Path = DEFAULT_FILE, override: Path | None = None) -> PlanThresholds:
    """The shipped plan file merged with the operator's (argument, else SMARTCITY_PLAN_OVERRIDES)."""
    plan = read_file(path)
    override = override or (Path(os.environ["SMARTCITY_PLAN_OVERRIDES"])
                            if os.environ.get("SMARTCITY_PLAN_OVERRIDES") else None)
    return plan.merged(read_file(override)) if override else plan
