"""Forest fire-weather generator: temperature, humidity, wind and 24-h rain per zone, with spring and
autumn dry spells, a summer rainy season, and rare camera smoke/flame detections."""
from __future__ import annotations

import numpy as np

from simulators.base import DAY, Calendar, Model, Sensors, ar1, seasonal


class FireModel(Model):
    domain = "fire"

    def __init__(self, sensors: Sensors, rng: np.random.Generator, smoke_per_day: float = 0.002) -> None:
        super().__init__(sensors, rng)
        self.weather = np.zeros((1, 3))            # regional temperature, humidity, wind anomalies
        self.rain_events: list[tuple[float, np.ndarray]] = []  # (time s, mm per sensor) in last 24 h
        self.smoke_per_day = smoke_per_day

    def step(self, t_ns: int, dt_s: float) -> np.ndarray:
        c = Calendar.at(t_ns)
        now = t_ns / 1e9
        self.weather = ar1(self.weather, dt_s, 3 * DAY, 1.0, self.rng)
        winter = seasonal(c.doy, 15)
        spring_dry = float(np.exp(-((c.doy - 105) ** 2) / (2 * 25**2)))   # April
        autumn_dry = float(np.exp(-((c.doy - 290) ** 2) / (2 * 20**2)))   # mid-October
        dry = max(spring_dry, 0.7 * autumn_dry)
        rainy = float(np.exp(-((c.doy - 205) ** 2) / (2 * 25**2)))         # late July
        rain_rate = (0.15 + 0.9 * rainy - 0.12 * dry) / DAY                 # events per second
        falls = self.rng.random() < max(rain_rate, 0.01 / DAY) * dt_s
        if falls:
            amount = self.rng.gamma(1.2, 8 + 25 * rainy) * self.rng.uniform(0.7, 1.3, self.n)
            self.rain_events.append((now, amount))
        self.rain_events = [(t, a) for t, a in self.rain_events if now - t < DAY]
        rain24 = sum((a for _, a in self.rain_events), np.zeros(self.n))
        diurnal = np.sin(2 * np.pi * (c.hour - 9) / 24)
        w = self.weather[0]
        temp = 13 - 12 * winter + 5 * diurnal + 3 * w[0] + self.rng.normal(0, 0.4, self.n)
        rh = 68 + 12 * rainy - 28 * dry - 12 * diurnal + 10 * w[1] + 25 * (rain24 > 0.5)
        wind = np.abs(12 + 8 * spring_dry + 5 * w[2] + self.rng.normal(0, 2, self.n))
        smoke = self.rng.random(self.n) < self.smoke_per_day * dt_s / DAY * (1 + 4 * dry)
        flame = smoke & (self.rng.random(self.n) < 0.3)
        out = self.empty()
        self.put(out, "temperature", np.round(temp, 1))
        self.put(out, "humidity", np.round(np.clip(rh + self.rng.normal(0, 3, self.n), 8, 100), 1))
        self.put(out, "wind_speed", np.round(wind, 1))
        self.put(out, "rain_24h", np.round(rain24, 1))
        self.put(out, "smoke", smoke.astype(float))
        self.put(out, "flame", flame.astype(float))
        self.put(out, "confidence", np.where(smoke, np.round(self.rng.uniform(0.6, 0.99, self.n), 2), np.nan))
        return out
