"""Garbage sorting: the plan's rates (l.273) from what was generated, collected, treated and recovered.

- recycling rate (回收利用率) = (recyclables recovered + kitchen waste to resource treatment) / generated
- resource-utilisation rate (资源化利用率) = that plus incineration with energy recovery weighted by a
  coefficient (national usage; operator-set); the plan's 35% is shown against the recycling rate
- harmless-treatment rate (无害化处理率) = harmlessly treated / generated
- collection: a bin above 90% full that is not emptied within the deadline is overdue
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from schemas.thresholds import PlanThresholds, load_plan


class Rates(NamedTuple):
    recycling: np.ndarray
    resource_utilisation: np.ndarray
    harmless: np.ndarray


def rates(generated: np.ndarray, recovered: np.ndarray, kitchen_resource: np.ndarray, incinerated: np.ndarray,
          harmless: np.ndarray, *, incineration_coefficient: float = 0.3) -> Rates:
    """The three rates per period (NaN where nothing was generated)."""
    gen = np.asarray(generated, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = gen > 0
        recycling = np.where(ok, (np.asarray(recovered) + np.asarray(kitchen_resource)) / gen, np.nan)
        resource = np.where(ok, recycling + incineration_coefficient * np.asarray(incinerated) / gen, np.nan)
        harmless_rate = np.where(ok, np.asarray(harmless) / gen, np.nan)
    return Rates(recycling, resource, harmless_rate)


def overdue_bins(full_since_ns: np.ndarray, now_ns: int, *, plan: PlanThresholds | None = None,
                 at: int | None = None) -> np.ndarray:
    """True for bins full (>= the full level) for longer than the collection deadline."""
    deadline = (plan or load_plan()).value("garbage.collection_deadline", at) * 1e9
    since = np.asarray(full_since_ns, float)
    return ~np.isnan(since) & ((now_ns - since) > deadline)


def full_since(ts: np.ndarray, fill: np.ndarray, *, level: float) -> float:
    """Start of the current run of readings at or above `level` in one bin's time-ordered series
    (NaN when the latest reading is below it)."""
    fill = np.asarray(fill, float)
    if not len(fill) or not fill[-1] >= level:
        return float("nan")
    below = np.flatnonzero(~(fill >= level))
    return float(ts[below[-1] + 1] if len(below) else ts[0])
