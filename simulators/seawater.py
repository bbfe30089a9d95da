"""Nearshore sea-water generator: tides, daily oxygen cycle, runoff events, a summer green tide.

Baseline water is GB 3097 class I-II. Rain runoff (more frequent in the July-August rainy season)
pushes inorganic nitrogen and phosphate into class III/IV for a day or two at a buoy; in June-July a
green tide (浒苔) raises chlorophyll-a and turbidity together at some buoys.
"""
from __future__ import annotations

import numpy as np

from simulators.base import DAY, Calendar, Model, Sensors, ar1, seasonal

M2_PERIOD_S = 12.42 * 3600


class SeawaterModel(Model):
    domain = "seawater"

    def __init__(self, sensors: Sensors, rng: np.random.Generator) -> None:
        super().__init__(sensors, rng)
        self.runoff = np.zeros(self.n)       # 0..1 pulse, decays over ~1.5 days
        self.bloom = np.zeros(self.n)        # 0..1 green-tide intensity
        self.noise = np.zeros((self.n, 3))
        self.bloom_prone = rng.random(self.n) < 0.5
        self.phase = rng.uniform(0, 2 * np.pi, self.n)

    def step(self, t_ns: int, dt_s: float) -> np.ndarray:
        c = Calendar.at(t_ns)
        rainy = 1.0 if c.month in (7, 8) else 0.3
        storms = self.rng.random(self.n) < rainy * dt_s / (9 * DAY)
        self.runoff = np.maximum(self.runoff * np.exp(-dt_s / (1.5 * DAY)), storms * self.rng.uniform(0.6, 1.0, self.n))
        in_season = 152 <= c.doy <= 212  # June-July
        grow = (self.bloom_prone & in_season) * dt_s / (6 * DAY)
        self.bloom = np.clip(self.bloom + grow - (not in_season) * dt_s / (5 * DAY), 0, 1)
        self.noise = ar1(self.noise, dt_s, 8 * 3600, 0.08, self.rng)
        tide = np.sin(2 * np.pi * t_ns / 1e9 / M2_PERIOD_S + self.phase)
        sun = np.sin(2 * np.pi * (c.hour - 8) / 24)
        warm = -seasonal(c.doy, 30)
        out = self.empty()
        self.put(out, "ph", np.round(8.12 + 0.05 * sun - 0.25 * self.runoff + 0.1 * self.bloom + 0.02 * self.noise[:, 0], 2))
        self.put(out, "dissolved_oxygen", np.round(7.6 - 0.9 * warm + 0.5 * sun - 1.4 * self.runoff + 0.2 * self.noise[:, 1], 2))
        self.put(out, "cod", np.round(1.2 + 1.1 * self.runoff + 0.8 * self.bloom + 0.1 * abs(self.noise[:, 2]), 2))
        self.put(out, "inorganic_nitrogen", np.round(0.14 + 0.30 * self.runoff + 0.01 * tide, 3))
        self.put(out, "phosphate", np.round(0.010 + 0.030 * self.runoff + 0.001 * tide, 4))
        self.put(out, "petroleum", np.round(0.02 + 0.005 * abs(self.noise[:, 0]), 3))
        self.put(out, "chlorophyll_a", np.round(2.5 + 1.5 * sun.clip(0) + 40 * self.bloom ** 1.5, 2))
        self.put(out, "turbidity", np.round(4 + 2 * abs(tide) + 25 * self.bloom + 15 * self.runoff, 1))
        self.put(out, "water_temperature", np.round(14 + 10 * warm + 0.5 * sun, 1))
        self.put(out, "salinity", np.round(31.2 + 0.3 * tide - 3.5 * self.runoff, 2))
        return out
