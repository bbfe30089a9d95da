"""Garbage generator: bins of the four GB/T 19095-2019 categories fill through the day (faster on
days off), are emptied on their schedule (a collection reading carries the mass), and the treatment
plant reports each day's harmless treatment and recovery. One bin can be left unemptied (overdue)."""
from __future__ import annotations

import numpy as np

from simulators.base import DAY, Calendar, Model, Sensors

CATEGORIES = ("kitchen", "residual", "recyclable", "hazardous")
SHARE = (0.30, 0.45, 0.20, 0.05)                                   # of bins
FILL_PER_DAY = {"kitchen": 0.85, "residual": 0.75, "recyclable": 0.40, "hazardous": 0.10}
EMPTY_EVERY_DAYS = {"kitchen": 1, "residual": 1, "recyclable": 2, "hazardous": 7}
FULL_KG = {"kitchen": 100.0, "residual": 110.0, "recyclable": 45.0, "hazardous": 25.0}
COLLECT_HOUR = 6.0  # local time


class GarbageModel(Model):
    domain = "garbage"

    def __init__(self, sensors: Sensors, rng: np.random.Generator, overdue_bins: int = 1) -> None:
        super().__init__(sensors, rng)
        self.plant = sensors.kind == "plant"
        bins = np.flatnonzero(~self.plant)
        self.category = np.array([""] * self.n, dtype=object)
        self.category[bins] = [CATEGORIES[i] for i in rng.choice(4, size=len(bins), p=SHARE)]
        self.fill = np.where(self.plant, np.nan, rng.uniform(0.05, 0.4, self.n))
        self.rate = np.array([FILL_PER_DAY.get(c, 0.0) for c in self.category]) * rng.uniform(0.7, 1.3, self.n)
        self.contamination = rng.uniform(0.03, 0.18, self.n)
        self.never_emptied = np.zeros(self.n, bool)
        self.never_emptied[bins[:overdue_bins]] = True                 # the bin the truck skips
        self.emptied_on = np.full(self.n, -1)                         # local day each bin was last emptied
        self.last_day: int | None = None
        self.collected_today = {c: 0.0 for c in CATEGORIES}

    def step(self, t_ns: int, dt_s: float) -> np.ndarray:
        c = Calendar.at(t_ns)
        day = int((t_ns / 1e9 + 8 * 3600) // DAY)
        out = self.empty()
        busy = 1.3 if c.day_off else 1.0
        bins = ~self.plant
        self.fill[bins] = np.minimum(1.0, self.fill[bins] + self.rate[bins] * busy * dt_s / DAY
                                     * (1 + 0.1 * self.rng.standard_normal(bins.sum())))
        next_day = int((t_ns / 1e9 + dt_s + 8 * 3600) // DAY)
        collect = np.zeros(self.n, bool)
        if self.last_day is None or day != self.last_day or c.hour >= COLLECT_HOUR:
            due = np.array([(day % EMPTY_EVERY_DAYS.get(cat, 1) == 0) if cat else False for cat in self.category])
            collect = bins & due & ~self.never_emptied & (c.hour >= COLLECT_HOUR) & ~self._emptied_today(day)
        if collect.any():
            kg = self.fill[collect] * np.array([FULL_KG[cat] for cat in self.category[collect]])
            for cat, mass in zip(self.category[collect], kg):
                self.collected_today[cat] += float(mass)
            for cat in CATEGORIES:
                rows = collect & (self.category == cat)
                self.put_rows(out, rows, f"{cat}_kg", np.round(self.fill[rows] * FULL_KG[cat], 2))
            self.put_rows(out, collect, "collected", 1.0)
            self.fill[collect] = self.rng.uniform(0.0, 0.05, collect.sum())
            self.emptied_on[collect] = day
        if next_day != day and self.plant.any():
            self._plant_report(out)  # the day's last step: report what the trucks brought in today
        self.put_rows(out, bins, "fill_level", np.round(self.fill[bins], 3))
        self.put_rows(out, bins, "contamination", np.round(self.contamination[bins], 3))
        self.last_day = day
        return out

    def _emptied_today(self, day: int) -> np.ndarray:
        return self.emptied_on == day

    def put_rows(self, out: np.ndarray, rows: np.ndarray, name: str, values: np.ndarray | float) -> None:
        out[rows, self.fields.index(name)] = values

    def _plant_report(self, out: np.ndarray) -> None:
        """Today's treatment at the plant, from what the trucks brought in."""
        col = self.collected_today
        rows = self.plant
        # Sorting is imperfect: part of the kitchen waste is too contaminated for resource treatment.
        self.put_rows(out, rows, "recovered_kg", round(col["recyclable"] * 0.80, 2))
        self.put_rows(out, rows, "kitchen_resource_kg", round(col["kitchen"] * 0.85, 2))
        self.put_rows(out, rows, "incinerated_kg", round(col["residual"] * 0.95 + col["kitchen"] * 0.15, 2))
        self.put_rows(out, rows, "landfilled_kg", round(col["residual"] * 0.05, 2))
        total = sum(col.values())
        self.put_rows(out, rows, "harmless_kg", round(total * 0.995, 2))
        for cat in CATEGORIES:
            self.put_rows(out, rows, f"{cat}_kg", round(col[cat], 2))
        self.collected_today = {c: 0.0 for c in CATEGORIES}
