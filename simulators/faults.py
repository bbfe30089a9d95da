"""Fault injection: each fault switchable by a rate, decided by the seeded RNG, and counted exactly.

Per-reading faults act on the values (drift, stuck, spike), the time (skew) or the sensor's presence
(dropout); per-message faults act on delivery (duplicate, late/out-of-order) or the bytes (malformed).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

FAULTS = ("drift", "stuck", "dropout", "spike", "duplicate", "late", "skew", "malformed")
DESCRIPTIONS = {
    "drift": "a sensor's readings drift away linearly (+2% of the value per simulated day)",
    "stuck": "a sensor repeats its last values",
    "dropout": "a sensor falls silent for a while (readings not sent)",
    "spike": "an out-of-range value (the bridge must dead-letter it)",
    "duplicate": "a message is published twice",
    "late": "a message is held back and published after later ones (out of order)",
    "skew": "a sensor's clock is off by minutes",
    "malformed": "a message's bytes are truncated (invalid JSON)",
}


def parse_faults(spec: str) -> dict[str, float]:
    """'drift=0.01,spike=0.001' -> {name: rate}; names checked, rates in [0, 1]."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        try:
            rate = float(value) if value else 0.01
        except ValueError:
            raise ValueError(f"fault {name}: rate {value!r} is not a number") from None
        if not 0 <= rate <= 1:
            raise ValueError(f"fault {name}: rate {rate} must be within 0..1")
        rates[name] = rate
    return rates


@dataclass
class FaultInjector:
    """Applies the configured faults to one domain's readings, tick by tick, and counts them."""

    rates: dict[str, float]
    n: int
    rng: np.random.Generator
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.drift_since: np.ndarray = np.full(self.n, -1.0)   # sim seconds when drift began (-1: none)
        self.stuck_left = np.zeros(self.n, int)                   # ticks left stuck
        self.silent_left = np.zeros(self.n, int)                  # ticks left silent
        self.skew_s = np.zeros(self.n)
        self.last: np.ndarray | None = None

    def _start(self, name: str, active: np.ndarray) -> np.ndarray:
        """Sensors where a sensor-level fault starts this tick."""
        rate = self.rates.get(name, 0.0)
        return (~active) & (self.rng.random(self.n) < rate) if rate else np.zeros(self.n, bool)

    def apply(self, values: np.ndarray, t_s: float, bounds_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[str]]]:
        """(values, send mask, clock skew s, fault names per sensor) for one tick."""
        values = values.copy()
        faults: list[list[str]] = [[] for _ in range(self.n)]
        present = ~np.isnan(values).all(axis=1)
        # dropout: silent for 5-30 ticks
        starting = self._start("dropout", self.silent_left > 0) & present
        self.silent_left[starting] = self.rng.integers(5, 31, starting.sum())
        silent = (self.silent_left > 0) & present
        self.silent_left[self.silent_left > 0] -= 1
        # drift: from now on
        self.drift_since[self._start("drift", self.drift_since >= 0)] = t_s
        drifting = (self.drift_since >= 0) & present & ~silent
        if drifting.any():
            days = (t_s - self.drift_since[drifting]) / 86400
            values[drifting] *= (1 + 0.02 * days)[:, None]
        # stuck: repeat the last values for 5-20 ticks
        starting = self._start("stuck", self.stuck_left > 0) & present
        self.stuck_left[starting] = self.rng.integers(5, 21, starting.sum())
        stuck = (self.stuck_left > 0) & present & ~silent & (self.last is not None)
        if stuck.any() and self.last is not None:
            keep = ~np.isnan(self.last[stuck])
            values[stuck] = np.where(keep, self.last[stuck], values[stuck])
        self.stuck_left[self.stuck_left > 0] -= 1
        # what a stuck sensor repeats: the last real values, never a spike
        self.last = np.where(np.isnan(values), self.last if self.last is not None else np.nan, values)
        # spike: one field far above its physical range
        spike = present & ~silent & (self.rng.random(self.n) < self.rates.get("spike", 0.0))
        for i in np.flatnonzero(spike):
            j = self.rng.choice(np.flatnonzero(~np.isnan(values[i])))
            values[i, j] = bounds_hi[j] * 10 + 1
        # skew: a sensor's clock is off by 2-30 minutes, either way, from now on
        starting = self._start("skew", self.skew_s != 0)
        self.skew_s[starting] = self.rng.choice([-1, 1], starting.sum()) * self.rng.uniform(120, 1800, starting.sum())
        skewed = (self.skew_s != 0) & present & ~silent
        for name, mask in (("dropout", silent), ("drift", drifting), ("stuck", stuck), ("spike", spike), ("skew", skewed)):
            self.counts[name] += int(mask.sum())
            for i in np.flatnonzero(mask):
                faults[i].append(name)
        return values, present & ~silent, np.where(skewed, self.skew_s, 0.0), faults

    def message_faults(self) -> tuple[bool, bool, bool]:
        """(duplicate, late, malformed) for one outgoing message."""
        dup = self.rng.random() < self.rates.get("duplicate", 0.0)
        late = self.rng.random() < self.rates.get("late", 0.0)
        bad = self.rng.random() < self.rates.get("malformed", 0.0)
        return dup, late, bad
