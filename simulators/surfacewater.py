"""Surface-water generator: the Laoshan reservoir and district river sections through the seasons.

Each site sits at about 60% of its designated class's GB 3838 limits (the plan's designated class,
else III), so it mostly meets its target. Warm water holds less oxygen (saturation falls from ~13 mg/L
in winter to ~8 mg/L in August), photosynthesis lifts DO and pH in the afternoon. District-wide storms,
frequent in the July-August rainy season, wash nitrogen, phosphorus and organic matter into the rivers
for a day or two (often one class worse); the reservoir answers slowly and weakly, so it stays in class
II most of the time. Now and then a sewage overflow or illegal discharge at one river section drives
ammonia and phosphorus past class V (劣Ⅴ) for a few hours.
"""
from __future__ import annotations

import numpy as np

from schemas.surfacewater import LAKE_KINDS, designated_classes
from schemas.thresholds import load_plan, today
from simulators.base import DAY, Calendar, Model, Sensors, ar1, seasonal

DEFAULT_CLASS = 3
STORMS_PER_DAY = {7: 0.25, 8: 0.25, 6: 0.1, 9: 0.1}  # Qingdao's rainy season is July-August
DRY_STORMS_PER_DAY = 0.04
EPISODES_PER_DAY = {"river": 1 / 60, "reservoir": 1 / 400}
# concentration: (relative rise per unit of storm runoff, mg/L added by a full pollution episode, decimals)
RESPONSE = {"permanganate_index": (0.8, 6.0, 2), "cod": (0.9, 25.0, 1), "bod5": (0.7, 8.0, 2),
            "ammonia_nitrogen": (1.6, 5.0, 3), "total_phosphorus": (2.0, 0.4, 4), "total_nitrogen": (0.8, 6.0, 3)}


def do_saturation(t: np.ndarray) -> np.ndarray:
    """Dissolved-oxygen saturation of fresh water at sea level (mg/L) at temperature t (°C)."""
    return 14.652 - 0.41022 * t + 0.007991 * t**2 - 0.000077774 * t**3


class SurfacewaterModel(Model):
    """The reservoir and river sections: designated-class baselines, seasons, storms and episodes."""

    domain = "surfacewater"

    def __init__(self, sensors: Sensors, rng: np.random.Generator) -> None:
        super().__init__(sensors, rng)
        plan, now = load_plan(), today()  # designated classes and limits as in force today
        self.lake = np.isin(sensors.kind, LAKE_KINDS)
        designated = designated_classes(sensors.site, plan, now)
        row = np.where(np.isnan(designated), DEFAULT_CLASS, designated).astype(int) - 1

        def base(key: str, share: float) -> np.ndarray:
            return share * plan.get(key, now).array()[row]

        self.base = {f: base(f"gb3838.{f}", s) for f, s in
                     (("permanganate_index", 0.6), ("cod", 0.6), ("bod5", 0.55), ("ammonia_nitrogen", 0.55))}
        self.base["total_phosphorus"] = np.where(self.lake, base("gb3838.total_phosphorus.lake", 0.6),
                                                 base("gb3838.total_phosphorus.river", 0.6))
        # rivers' total nitrogen is high (nitrate) and not judged; the reservoir's sits below its class limit
        self.base["total_nitrogen"] = np.where(self.lake, base("gb3838.total_nitrogen.lake", 0.65),
                                               1.2 + 2 * self.base["ammonia_nitrogen"])
        self.saturation = 1.0 - 0.06 * row          # urban rivers run further below DO saturation
        self.response = np.where(self.lake, 0.35, rng.uniform(0.7, 1.2, self.n))  # to a storm
        self.runoff = np.zeros(self.n)               # 0..~1, decays over 1.5 days (rivers), 6 days (reservoir)
        self.episode = np.zeros(self.n)              # 0..~1.6, decays over ~10 hours
        self.noise = np.zeros((self.n, len(RESPONSE) + 1))
        self.shade = rng.normal(0, 0.8, self.n)     # °C: each reach's altitude and shading
        self.buffering = rng.normal(0, 0.12, self.n)  # pH: each catchment's rock and soil

    def step(self, t_ns: int, dt_s: float) -> np.ndarray:
        c = Calendar.at(t_ns)
        storm = self.rng.random() < STORMS_PER_DAY.get(c.month, DRY_STORMS_PER_DAY) * dt_s / DAY
        intensity = self.rng.uniform(0.4, 1.0) if storm else 0.0   # one rain for the whole district
        decay = np.exp(-dt_s / np.where(self.lake, 6 * DAY, 1.5 * DAY))
        self.runoff = np.maximum(self.runoff * decay, intensity * self.response)
        rate = np.where(self.lake, EPISODES_PER_DAY["reservoir"], EPISODES_PER_DAY["river"])
        start = self.rng.random(self.n) < rate * dt_s / DAY
        self.episode = np.maximum(self.episode * np.exp(-dt_s / (10 * 3600)),
                                  start * self.rng.uniform(0.6, 1.6, self.n))
        self.noise = ar1(self.noise, dt_s, 6 * 3600, 0.06, self.rng)
        r, e = self.runoff, self.episode
        sun = np.sin(2 * np.pi * (c.hour - 9) / 24)          # photosynthesis peaks mid-afternoon
        temp = np.where(self.lake, 14 + 10 * seasonal(c.doy, 225) + 0.3 * sun,
                        14.5 + self.shade + 11.5 * seasonal(c.doy, 215) + 1.0 * sun - 1.5 * r)
        warm = np.clip(temp / 25, 0, None)                   # algae: more organic matter in warm reservoirs
        out = self.empty()
        for j, (f, (gain, load, digits)) in enumerate(RESPONSE.items()):
            algae = 1 + 0.15 * self.lake * warm if f in ("permanganate_index", "cod") else 1
            value = self.base[f] * algae * (1 + gain * r) * np.exp(self.noise[:, j]) + load * e
            self.put(out, f, np.round(value, digits))
        do = do_saturation(temp) * self.saturation + np.where(self.lake, 0.3, 0.5) * sun - 1.2 * r - 3.5 * e
        self.put(out, "dissolved_oxygen", np.round(np.clip(do + 0.15 * self.noise[:, -1], 0.2, None), 2))
        self.put(out, "ph", np.round(7.7 + self.buffering + 0.12 * sun - 0.3 * r - 0.2 * e + 0.05 * self.noise[:, -1], 2))
        self.put(out, "water_temperature", np.round(np.clip(temp, 0.5, None), 1))
        return out
