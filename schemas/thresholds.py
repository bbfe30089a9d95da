"""The plan-threshold file: load, validate, override, and pick the entry in force at a timestamp."""
from __future__ import annotations

import datetime as dt
import os
import tomllib
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_FILE = Path(__file__).with_name("plan.toml")


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
        return self

    def get(self, key: str, at: dt.date | dt.datetime | int | None = None) -> Threshold:
        """The entry for `key` in force at `at` (a date, datetime, or UTC ns timestamp; default today)."""
        day = _day(at)
        candidates = [t for t in self.threshold if t.key == key]
        if not candidates:
            raise KeyError(f"no threshold {key!r} in the plan file")
        for t in candidates:
            if t.in_force(day):
                return t
        raise KeyError(f"threshold {key!r} is not in force on {day} (entries: "
                       + ", ".join(f"{t.valid_from}..{t.valid_to or ''}" for t in candidates) + ")")

    def value(self, key: str, at: dt.date | dt.datetime | int | None = None) -> float:
        value = self.get(key, at).value
        if isinstance(value, tuple):
            raise TypeError(f"{key} is a table row; use get(...).array()")
        return value

    def merged(self, override: "PlanThresholds") -> "PlanThresholds":
        """This file with an operator's entries replacing same key + from, and adding new ones."""
        keep = {(t.key, t.valid_from): t for t in self.threshold}
        keep.update({(t.key, t.valid_from): t for t in override.threshold})
        return PlanThresholds(version=f"{self.version}+{override.version}", threshold=list(keep.values()))


def _day(at: dt.date | dt.datetime | int | None) -> dt.date:
    if at is None:
        return dt.datetime.now(dt.timezone.utc).date()
    if isinstance(at, int):
        return dt.datetime.fromtimestamp(at / 1e9, dt.timezone.utc).date()
    if isinstance(at, dt.datetime):
        return at.astimezone(dt.timezone.utc).date() if at.tzinfo else at.date()
    return at


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
