"""Air quality generator: PM2.5 with seasonal, diurnal and weather-episode cycles, correlated PM10,
NO2 rush hours, summer afternoon O3, weather.

PM2.5 is log-normal around a seasonal mean (winter heating season high, summer low) with a regional
weather component lasting days (episodes) and a local one lasting hours; the log-normal mean is
corrected so that `annual_mean` is the long-run mean. With the defaults a simulated year lands near
the plan's 35 µg/m³ with a dozen or more days above the 75 µg/m³ 24-h limit, as Qingdao sees.
"""
from __future__ import annotations

import numpy as np

from simulators.base import DAY, Calendar, Model, Sensors, ar1, seasonal


class AirModel(Model):
    domain = "air"

    def __init__(self, sensors: Sensors, rng: np.random.Generator, annual_mean: float = 35.0) -> None:
        super().__init__(sensors, rng)
        self.annual_mean = annual_mean
        self.regional = np.zeros(1)
        self.local = np.zeros(self.n)
        self.site_bias = rng.normal(0, 0.08, self.n)  # some stations are dirtier than others

    def step(self, t_ns: int, dt_s: float) -> np.ndarray:
        c = Calendar.at(t_ns)
        winter = seasonal(c.doy, 15)                     # +1 mid-January, -1 mid-July
        sigma_reg = 0.50 + 0.12 * winter                 # stagnant winter weather: bigger episodes
        self.regional = ar1(self.regional, dt_s, 2.5 * DAY, sigma_reg, self.rng)
        self.local = ar1(self.local, dt_s, 6 * 3600, 0.18, self.rng)
        base = self.annual_mean * (1 + 0.38 * winter)
        diurnal = 1 + 0.12 * np.cos(2 * np.pi * (c.hour - 22) / 24) + 0.08 * np.cos(2 * np.pi * (c.hour - 8) / 12)
        log_dev = self.regional + self.local + self.site_bias
        correction = np.exp(-(sigma_reg**2 + 0.18**2 + 0.08**2) / 2)
        pm25 = base * diurnal * correction * np.exp(log_dev)
        rush = np.exp(-((c.hour - 8) ** 2) / 2) + np.exp(-((c.hour - 18) ** 2) / 2)
        summer = max(0.0, -winter)
        daylight = max(0.0, np.sin(np.pi * (c.hour - 6) / 14)) if 6 <= c.hour <= 20 else 0.0
        out = self.empty()
        self.put(out, "pm25", np.round(pm25, 1))
        self.put(out, "pm10", np.round(pm25 * (1.65 + 0.1 * self.rng.standard_normal(self.n)).clip(1.2), 1))
        self.put(out, "no2", np.round((24 + 20 * rush) * np.exp(0.5 * self.local) * (1 + 0.15 * winter), 1))
        self.put(out, "so2", np.round(7 * (1 + 0.5 * max(winter, 0)) * np.exp(0.3 * self.local), 1))
        self.put(out, "co", np.round(0.55 * (1 + 0.3 * winter) * np.exp(0.4 * self.regional), 2))
        self.put(out, "o3", np.round((55 + 110 * summer * daylight + 25 * daylight) * np.exp(0.2 * self.local), 1))
        temp = 13 - 12 * winter + 4 * np.sin(2 * np.pi * (c.hour - 9) / 24)
        self.put(out, "temperature", np.round(temp + self.rng.normal(0, 0.5, self.n), 1))
        self.put(out, "humidity", np.round((70 - 8 * winter + 10 * self.local).clip(15, 100), 1))
        return out
