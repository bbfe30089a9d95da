"""The processor plug-in contract: a domain turns buffered readings into compliance points and alert
observations. Plug-ins compute; the service (processors/service.py) moves data. Event-time windows
are local (UTC+8) hours and days, recomputed whole whenever a reading lands in them, so late and
out-of-order readings land in the right window and writing the result again is harmless."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from infra.lineprotocol import Point, escape  # noqa: F401 - part of the plug-in contract
from schemas.batch import ReadingBatch
from schemas.thresholds import PlanThresholds

LOCAL_OFFSET_NS = 8 * 3600 * 10**9
DAY_NS = 86400 * 10**9
HOUR_NS = 3600 * 10**9


def local_day(ts: np.ndarray) -> np.ndarray:
    """Local (UTC+8) day number of UTC ns timestamps."""
    return (np.asarray(ts, np.int64) + LOCAL_OFFSET_NS) // DAY_NS


def day_start(day: np.ndarray | int) -> np.ndarray:
    """UTC ns of the local midnight that starts `day`."""
    return np.asarray(day, np.int64) * DAY_NS - LOCAL_OFFSET_NS


def hour_start(ts: np.ndarray) -> np.ndarray:
    return (np.asarray(ts, np.int64) // HOUR_NS) * HOUR_NS


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


# The service gives plug-ins read access to earlier results (long-horizon indicators are recomputed
# from the aggregates already in InfluxDB): history(flux_query) -> list of row dicts.
History = Callable[[str], list[dict[str, Any]]]


class DomainProcessor(ABC):
    """A domain's indicators. `horizon_days`: how many local days back windows stay open (the
    service keeps that much in its buffer and replays it from Kafka on restart)."""

    domain: str
    horizon_days: int = 2

    def __init__(self, plan: PlanThresholds, history: History, compliance_bucket: str) -> None:
        self.plan = plan
        self.history = history
        self.bucket = compliance_bucket

    @abstractmethod
    def compute(self, buffer: ReadingBatch, days: np.ndarray) -> Output:
        """Indicators for the local `days` touched by the latest batch, from every buffered reading."""


def group_means(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique keys, NaN-aware means [k, fields], counts [k, fields]) of `values` rows grouped by key."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    present = ~np.isnan(values)
    sums = np.zeros((len(uniq), values.shape[1]))
    counts = np.zeros((len(uniq), values.shape[1]))
    np.add.at(sums, inverse, np.where(present, values, 0.0))
    np.add.at(counts, inverse, present)
    with np.errstate(invalid="ignore", divide="ignore"):
        return uniq, np.where(counts > 0, sums / counts, np.nan), counts


def split_key(key: str) -> tuple[str, int]:
    site, _, ts = key.rpartition("|")
    return site, int(ts)


def indicator(domain: str, name: str, scope: str, value: float, ts: int, *, target: float | None = None,
              source: str = "", **extra: Any) -> Point:
    """A plan indicator point: value against target, tagged with where the target comes from."""
    return Point("indicator", {"domain": domain, "indicator": name, "scope": scope, "source": source},
                 {"value": value, "target": target, **extra}, ts)

