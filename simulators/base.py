"""What every domain generator shares: the sensors, local calendar features, and the model interface.

A model is a vectorised state machine: `step(t, dt)` advances every sensor by `dt` seconds to event
time `t` and returns one row of values per sensor (NaN where a field is not reported).
"""
from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from schemas import domain as get_domain
from schemas.sites import sites_for

LOCAL_OFFSET_H = 8  # China Standard Time, UTC+8
DAY = 86400.0

# Public holidays (mainland China), as published for each year: the dates scenic lots and malls fill.
HOLIDAYS = {
    2025: [("01-01", "01-01"), ("01-28", "02-04"), ("04-04", "04-06"), ("05-01", "05-05"),
           ("05-31", "06-02"), ("10-01", "10-08")],
    2026: [("01-01", "01-03"), ("02-15", "02-23"), ("04-04", "04-06"), ("05-01", "05-05"),
           ("06-19", "06-21"), ("09-25", "09-27"), ("10-01", "10-07")],
    2027: [("01-01", "01-01"), ("02-05", "02-12"), ("04-05", "04-05"), ("05-01", "05-05"),
           ("10-01", "10-07")],
}


def _holiday_days() -> set[dt.date]:
    days = set()
    for year, spans in HOLIDAYS.items():
        for a, b in spans:
            d = dt.date.fromisoformat(f"{year}-{a}")
            while d <= dt.date.fromisoformat(f"{year}-{b}"):
                days.add(d)
                d += dt.timedelta(days=1)
    return days


_HOLIDAYS = _holiday_days()


@dataclass(frozen=True)
class Calendar:
    """Local (UTC+8) time features of one instant."""

    doy: float        # day of year, 0-based, fractional
    hour: float       # local hour, fractional
    weekday: int      # 0 Monday .. 6 Sunday
    holiday: bool
    month: int

    @classmethod
    def at(cls, t_ns: int) -> "Calendar":
        local = dt.datetime.fromtimestamp(t_ns / 1e9, dt.timezone(dt.timedelta(hours=LOCAL_OFFSET_H)))
        doy = local.timetuple().tm_yday - 1 + (local.hour * 3600 + local.minute * 60 + local.second) / DAY
        return cls(doy=doy, hour=local.hour + local.minute / 60 + local.second / 3600,
                   weekday=local.weekday(), holiday=local.date() in _HOLIDAYS, month=local.month)

    @property
    def day_off(self) -> bool:
        return self.holiday or self.weekday >= 5


def seasonal(doy: float, peak_doy: float) -> float:
    """+1 at `peak_doy`, -1 half a year later."""
    return float(np.cos(2 * np.pi * (doy - peak_doy) / 365.25))


@dataclass
class Sensors:
    """The simulated sensors of one domain, as columns."""

    domain: str
    ids: np.ndarray
    site: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    kind: np.ndarray
    capacity: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def place(cls, domain: str, n: int) -> "Sensors":
        """`n` sensors spread round-robin over the domain's registry sites (ids `<site>-<k>`), plus
        one sensor at each fixed facility (kind "plant"), which reports for the whole domain."""
        all_sites = sites_for(domain)
        sites = [s for s in all_sites if s.kind != "plant"]
        chosen = [sites[i % len(sites)] for i in range(n)] + [s for s in all_sites if s.kind == "plant"]
        ids = [f"{s.id}-{i // len(sites) + 1:03d}" if s.kind != "plant" else s.id for i, s in enumerate(chosen)]
        return cls(
            domain=domain,
            ids=np.array(ids, dtype=object),
            site=np.array([s.id for s in chosen], dtype=object),
            lat=np.array([s.lat for s in chosen]),
            lon=np.array([s.lon for s in chosen]),
            kind=np.array([s.kind or "" for s in chosen], dtype=object),
            capacity=np.array([s.capacity or 0 for s in chosen], dtype=float),
        )


class Model(ABC):
    """A domain generator: construct with sensors and an RNG, then `step` through event time."""

    domain: str

    def __init__(self, sensors: Sensors, rng: np.random.Generator) -> None:
        self.sensors = sensors
        self.rng = rng
        self.fields = get_domain(self.domain).fields
        self.n = len(sensors)

    def empty(self) -> np.ndarray:
        return np.full((self.n, len(self.fields)), np.nan)

    def put(self, out: np.ndarray, name: str, values: np.ndarray | float) -> None:
        out[:, self.fields.index(name)] = values

    @abstractmethod
    def step(self, t_ns: int, dt_s: float) -> np.ndarray:
        """Advance to event time `t_ns` (`dt_s` seconds after the previous step); one row per sensor."""


def ar1(state: np.ndarray, dt_s: float, tau_s: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Ornstein-Uhlenbeck step: stationary N(0, sigma^2), correlation time tau, exact for any dt."""
    phi = np.exp(-dt_s / tau_s)
    return state * phi + rng.standard_normal(state.shape) * sigma * np.sqrt(1 - phi * phi)
