"""Parking: occupancy per lot, saturation, the networked-management rate and spaces added.

The plan asks for every commercial lot networked (l.192) and 20,000 new public spaces (l.163).
A lot is networked while it reports within its heartbeat window.
"""
from __future__ import annotations

import numpy as np

from schemas.thresholds import PlanThresholds, load_plan


def occupancy(capacity: np.ndarray, occupied: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Occupied share 0..1 per reading, from `occupied` or else `capacity - free` (NaN: unknown)."""
    cap = np.asarray(capacity, float)
    occ = np.where(np.isnan(occupied), cap - np.asarray(free, float), occupied)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(np.where(cap > 0, occ / cap, np.nan), 0.0, 1.0)


def saturated(share: np.ndarray, *, plan: PlanThresholds | None = None, at: int | None = None) -> np.ndarray:
    """True where occupancy is above the saturation level (90% by default)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(share, float) > (plan or load_plan()).value("parking.saturated", at)


def networked_rate(last_seen_ns: np.ndarray, now_ns: int, heartbeat_s: float) -> float:
    """Share of registered lots (one entry each; NaN: never seen) that reported within the heartbeat."""
    seen = np.asarray(last_seen_ns, float)
    if not len(seen):
        return float("nan")
    online = (now_ns - seen) <= heartbeat_s * 1e9
    return float(np.mean(online & ~np.isnan(seen)))


def spaces_added(current_capacity: np.ndarray, baseline_spaces: float) -> float:
    """Public spaces now networked minus the baseline: progress towards the plan's +20,000."""
    return float(np.nansum(current_capacity) - baseline_spaces)
