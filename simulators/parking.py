"""Parking generator: occupancy curves per lot type (office, mall, scenic) by weekday, weekend and
holiday; lots report capacity, occupied and free. Lots going silent are a fault (dropout)."""
from __future__ import annotations

import numpy as np

from simulators.base import Calendar, Model, Sensors, ar1


def _bump(hour: float, centre: float, width: float) -> float:
    return float(np.exp(-((hour - centre) ** 2) / (2 * width**2)))


def occupancy_curve(kind: str, c: Calendar) -> float:
    """Expected occupied share of a lot of `kind` at local time `c`."""
    h = c.hour
    if kind == "office":
        return 0.08 + (0.82 * _bump(h, 13, 3.2) if not c.day_off else 0.12 * _bump(h, 13, 3))
    if kind == "mall":
        peak = 0.88 if c.day_off else 0.62
        return 0.06 + peak * max(_bump(h, 15, 3.5), 0.9 * _bump(h, 19.5, 1.8))
    # scenic: busy on days off, packed on holidays, mid-day
    peak = 0.97 if c.holiday else 0.75 if c.day_off else 0.35
    return 0.03 + peak * _bump(h, 12.5, 2.6)


class ParkingModel(Model):
    domain = "parking"

    def __init__(self, sensors: Sensors, rng: np.random.Generator) -> None:
        super().__init__(sensors, rng)
        self.noise = np.zeros(self.n)
        self.capacity = np.where(sensors.capacity > 0, sensors.capacity, 300.0)

    def step(self, t_ns: int, dt_s: float) -> np.ndarray:
        c = Calendar.at(t_ns)
        self.noise = ar1(self.noise, dt_s, 3600, 0.06, self.rng)
        expected = np.array([occupancy_curve(k or "mall", c) for k in self.sensors.kind])
        share = np.clip(expected + self.noise, 0, 1)
        occupied = np.round(share * self.capacity)
        out = self.empty()
        self.put(out, "capacity", self.capacity)
        self.put(out, "occupied", occupied)
        self.put(out, "free", self.capacity - occupied)
        return out
