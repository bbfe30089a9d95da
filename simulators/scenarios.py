"""Scenarios: plan-threshold episodes put into a simulated stretch of days, with their ground truth.

A scenario runs over whole local (UTC+8) days from its start (local midnight). It keeps the rest of
the city calm (every reading comfortably inside its limits, so that every alert it causes is one it
explains) and shapes one site per episode: the site's readings follow the episode's hourly course,
physically consistent across the fields that move together (haze: PM2.5, PM10, NO2, CO and humidity;
a dry gale: humidity, wind and temperature; rain runoff: nutrients up, salinity and oxygen down).

Each episode lists the alerts it must raise (`Expected`): rule, entity, the event-time window the
firing observation may carry (earliest..latest: `for` durations move it), by when in the feed the
data that fires it has been sent (`due`), and when it must have resolved (`resolves_after` for
hysteresis, `resolves_by`). `smartcity simulate --scenario` writes them to the manifest; the demo
checks what the router did against them (smartcity/democheck.py).

The expectations state the rule policies of deploy/config/alerts.toml as the operator set them
(air.aqi_hourly: `for` 1 h, clear below AQI 140): a deployment whose rules differ fails the check,
which is the point of checking.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from simulators.base import Model

HOUR_NS = 3600 * 10**9
DAY_NS = 24 * HOUR_NS


@dataclass(frozen=True)
class Expected:
    """One alert an episode must raise. Times are event time, UTC ns; None: not bound (wall-clock rules)."""

    rule: str
    entity: str
    domain: str
    episode: str
    earliest: int | None = None        # the firing observation's window starts no earlier ...
    latest: int | None = None          # ... and no later than this
    due: int | None = None             # readings up to here sent: it must have fired
    resolves_after: int | None = None  # hysteresis: the resolving observation's window is not before this
    resolves_by: int | None = None     # readings up to here sent: it must have resolved

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def soft_cap(values: np.ndarray, cap: float) -> np.ndarray:
    """Values squeezed below `cap` smoothly (cap * tanh(v / cap)): small values barely change, no flat top."""
    return cap * np.tanh(np.asarray(values, float) / cap)


def _steps(t_ns: int, day0: int, course: dict[int, float]) -> float | None:
    """The value of an hourly course {hour since the scenario's first midnight: value} at `t_ns`."""
    return course.get(int((t_ns - day0) // HOUR_NS))


def _pulse(t_ns: int, day0: int, start_h: float, rise_h: float, plateau_h: float, decay_h: float) -> float:
    """0..1: a linear rise from `start_h` over `rise_h` hours, a plateau, then exponential decay."""
    h = (t_ns - day0) / HOUR_NS - start_h
    if h < 0:
        return 0.0
    if h < rise_h:
        return h / rise_h
    if h < rise_h + plateau_h:
        return 1.0
    return float(np.exp(-(h - rise_h - plateau_h) / decay_h))


@dataclass
class Episode:
    """One site's episode: `shape(model, t, values, rows, rng)` rewrites the site's rows in place;
    `expects(day0)` lists the alerts it must raise."""

    name: str
    domain: str
    site: str
    text_en: str
    text_zh: str
    shape: Callable[[Model, int, int, np.ndarray, np.ndarray, np.random.Generator], None]
    expects: Callable[[int], list[Expected]]


def _col(model: Model, name: str) -> int:
    return model.fields.index(name)


# -- the calm city: every domain's readings comfortably inside its limits -------------------------------

def _calm_air(model: Model, values: np.ndarray, rows: np.ndarray) -> None:
    for name, cap in (("pm25", 50.0), ("pm10", 100.0), ("no2", 90.0), ("so2", 40.0), ("co", 2.0), ("o3", 150.0)):
        values[rows, _col(model, name)] = np.round(soft_cap(values[rows, _col(model, name)], cap), 2)


def _calm_parking(model: Model, values: np.ndarray, rows: np.ndarray) -> None:
    cap = values[rows, _col(model, "capacity")]
    occupied = np.round(soft_cap(values[rows, _col(model, "occupied")] / cap, 0.85) * cap)
    values[rows, _col(model, "occupied")] = occupied
    values[rows, _col(model, "free")] = cap - occupied


def _calm_fire(model: Model, values: np.ndarray, rows: np.ndarray) -> None:
    values[rows, _col(model, "humidity")] = np.maximum(values[rows, _col(model, "humidity")], 40.0)
    values[rows, _col(model, "wind_speed")] = np.round(soft_cap(values[rows, _col(model, "wind_speed")], 25.0), 1)
    values[rows, _col(model, "smoke")] = 0.0
    values[rows, _col(model, "flame")] = 0.0
    values[rows, _col(model, "confidence")] = np.nan


def _calm_seawater(model: Model, values: np.ndarray, rows: np.ndarray) -> None:
    for name, cap in (("inorganic_nitrogen", 0.25), ("phosphate", 0.014), ("cod", 2.5), ("petroleum", 0.04),
                      ("chlorophyll_a", 5.0), ("turbidity", 9.0)):
        values[rows, _col(model, name)] = np.round(soft_cap(values[rows, _col(model, name)], cap), 4)
    values[rows, _col(model, "dissolved_oxygen")] = np.maximum(values[rows, _col(model, "dissolved_oxygen")], 5.5)
    values[rows, _col(model, "ph")] = np.clip(values[rows, _col(model, "ph")], 7.9, 8.4)


def _calm_surfacewater(model: Model, values: np.ndarray, rows: np.ndarray) -> None:
    base = getattr(model, "base")   # each site's baseline: ~60% of its designated class's limits
    for name, typical in base.items():
        values[rows, _col(model, name)] = np.round(soft_cap(values[rows, _col(model, name)], 1.5 * typical[rows]), 4)
    values[rows, _col(model, "dissolved_oxygen")] = np.maximum(values[rows, _col(model, "dissolved_oxygen")], 6.2)
    values[rows, _col(model, "ph")] = np.clip(values[rows, _col(model, "ph")], 6.5, 8.8)


def _calm_garbage(model: Model, values: np.ndarray, rows: np.ndarray) -> None:
    fill = values[rows, _col(model, "fill_level")]
    values[rows, _col(model, "fill_level")] = np.where(np.isnan(fill), fill, np.round(soft_cap(fill, 0.85), 3))
    # every kilogram treated: the intake summed as the processor sums it (no rounding makes it exceed the intake)
    generated = sum(values[rows, _col(model, f"{c}_kg")] for c in ("recyclable", "hazardous", "kitchen", "residual"))
    plant = ~np.isnan(values[rows, _col(model, "harmless_kg")])
    values[rows[plant], _col(model, "harmless_kg")] = generated[plant]


CALM: dict[str, Callable[[Model, np.ndarray, np.ndarray], None]] = {
    "air": _calm_air, "parking": _calm_parking, "fire": _calm_fire, "seawater": _calm_seawater,
    "surfacewater": _calm_surfacewater, "garbage": _calm_garbage}


# -- the episodes of the demo scenario ---------------------------------------------------------------

# PM2.5 (µg/m³) per hour since the first midnight: a stagnant high holds the heating season's emissions
# all day, an evening inversion traps them; hourly AQI passes 100, 150, 200 and peaks at 290 (重度污染)
# at 22:00 (the day's mean ~95 breaks the 24-h limit 75); a cold front clears it after midnight. IAQI: 125 -> 165, 112 -> 147 (between the 150 alert level and the 140 clearing level:
# hysteresis holds the alert), 95 -> 125 (clears).
HAZE_PM25 = {**dict.fromkeys(range(8), 55), **dict.fromkeys(range(8, 14), 65), 14: 70, 15: 75, 16: 85, 17: 100, 18: 125, 19: 160, 20: 200, 21: 230, 22: 240, 23: 210,
             24: 170, 25: 130, 26: 112, 27: 95, 28: 75, 29: 55}


def _haze(model: Model, t: int, day0: int, values: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> None:
    level = _steps(t, day0, HAZE_PM25)
    if level is None:
        return
    noise = 1 + 0.02 * rng.standard_normal(len(rows))
    pm25 = level * noise
    stagnation = min(level / 240, 1.0)                    # 0..1: how trapped the air is
    values[rows, _col(model, "pm25")] = np.round(pm25, 1)
    values[rows, _col(model, "pm10")] = np.round(pm25 * 1.55, 1)     # haze is mostly fine secondary aerosol
    values[rows, _col(model, "no2")] = np.round(np.minimum(values[rows, _col(model, "no2")], 60) * (1 + 0.5 * stagnation), 1)
    values[rows, _col(model, "co")] = np.round(np.minimum(values[rows, _col(model, "co")], 1.2) * (1 + 0.8 * stagnation), 2)
    values[rows, _col(model, "humidity")] = np.round(np.clip(65 + 20 * stagnation + rng.normal(0, 1, len(rows)), 0, 100), 1)


def _haze_expects(day0: int) -> list[Expected]:
    h = lambda n: day0 + n * HOUR_NS  # noqa: E731
    return [Expected("air.aqi_hourly", "zhonghan", "air", "haze", earliest=h(19), latest=h(20), due=h(21),
                     resolves_after=h(27), resolves_by=h(29)),
            Expected("air.pm25_daily", "zhonghan", "air", "haze", earliest=h(0), latest=h(0), due=h(24),
                     resolves_after=h(24), resolves_by=h(48))]


# A Sunday-afternoon sale at the Zhonghan shopping centre: the lot fills past 90% from 13:00 to 17:00.
SALE_OCCUPANCY = {10: 0.70, 11: 0.80, 12: 0.86, 13: 0.94, 14: 0.97, 15: 0.99, 16: 0.97, 17: 0.93, 18: 0.85,
                  19: 0.75, 20: 0.60}


def _sale(model: Model, t: int, day0: int, values: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> None:
    share = _steps(t, day0, SALE_OCCUPANCY)
    if share is None:
        return
    cap = values[rows, _col(model, "capacity")]
    occupied = np.round(np.clip(share + rng.normal(0, 0.003, len(rows)), 0, 1) * cap)
    values[rows, _col(model, "occupied")] = occupied
    values[rows, _col(model, "free")] = cap - occupied


def _sale_expects(day0: int) -> list[Expected]:
    h = lambda n: day0 + n * HOUR_NS  # noqa: E731
    return [Expected("parking.saturated", "zhonghan-mall", "parking", "sale", earliest=h(13), latest=h(13), due=h(14),
                     resolves_after=h(18), resolves_by=h(19))]


# A dry north-westerly gale over Jufeng: humidity falls to 15%, wind rises to 42 km/h; noon FWI ~26, level 4 高.
GALE = {9: (5, 35, 28), 10: (7, 25, 35), 11: (8, 18, 40), 12: (9, 15, 42), 13: (10, 14, 44), 14: (10, 15, 42),
        15: (9, 18, 38), 16: (7, 25, 32), 17: (5, 35, 25)}   # hour: (°C, % RH, km/h)


def _gale(model: Model, t: int, day0: int, values: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> None:
    weather = _steps(t, day0, GALE)
    if weather is None:
        return
    temp, rh, wind = weather
    values[rows, _col(model, "temperature")] = np.round(temp + rng.normal(0, 0.2, len(rows)), 1)
    values[rows, _col(model, "humidity")] = np.round(rh + rng.normal(0, 0.3, len(rows)), 1)
    values[rows, _col(model, "wind_speed")] = np.round(wind + rng.normal(0, 0.5, len(rows)), 1)
    values[rows, _col(model, "rain_24h")] = 0.0


def _gale_expects(day0: int) -> list[Expected]:
    return [Expected("fire.danger", "jufeng", "fire", "gale", earliest=day0, latest=day0, due=day0 + 13 * HOUR_NS,
                     resolves_after=day0 + DAY_NS, resolves_by=day0 + DAY_NS + 13 * HOUR_NS)]


# Rain over the Liuqing catchment at 03:00: the river's runoff carries nitrogen and phosphate to the buoy
# at its mouth (salinity and oxygen fall, the water clouds). The day's inorganic nitrogen (~0.34 mg/L)
# puts the buoy in GB 3097 class III; the next day it is back in class I.
def _runoff(model: Model, t: int, day0: int, values: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> None:
    p = _pulse(t, day0, 3, 3, 0, 10)
    if p <= 0:
        return
    for name, change, digits in (("inorganic_nitrogen", 0.48, 3), ("phosphate", 0.03, 4), ("cod", 1.2, 2),
                                 ("dissolved_oxygen", -1.0, 2), ("salinity", -4.0, 2), ("turbidity", 15.0, 1),
                                 ("ph", -0.15, 2)):
        values[rows, _col(model, name)] = np.round(values[rows, _col(model, name)] + change * p, digits)


def _runoff_expects(day0: int) -> list[Expected]:
    return [Expected("seawater.class", "liuqing", "seawater", "runoff", earliest=day0, latest=day0, due=day0 + DAY_NS,
                     resolves_after=day0 + DAY_NS, resolves_by=day0 + 2 * DAY_NS)]


# A village pumping station above the Baisha river fails at 06:00 and is repaired at 20:00: ammonia and
# total phosphorus reach class III at a section designated class II (source water of the reservoir).
def _sewage(model: Model, t: int, day0: int, values: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> None:
    p = _pulse(t, day0, 6, 1, 13, 4)
    if p <= 0:
        return
    for name, change, digits in (("ammonia_nitrogen", 0.75, 3), ("total_phosphorus", 0.12, 4),
                                 ("permanganate_index", 1.5, 2), ("bod5", 1.0, 2), ("dissolved_oxygen", -1.5, 2)):
        values[rows, _col(model, name)] = np.round(values[rows, _col(model, name)] + change * p, digits)


def _sewage_expects(day0: int) -> list[Expected]:
    return [Expected("surfacewater.designated_class", "baisha-river", "surfacewater", "sewage", earliest=day0,
                     latest=day0, due=day0 + DAY_NS, resolves_after=day0 + DAY_NS, resolves_by=day0 + 2 * DAY_NS)]


# An incinerator line of the treatment station is down for the first day: 3% of the intake goes to
# temporary storage untreated (harmless treatment 97% < the plan's 100%); the next day it is back.
def _line_down(model: Model, t: int, day0: int, values: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> None:
    if (t - day0) // DAY_NS != 0:
        return
    harmless = values[rows, _col(model, "harmless_kg")]
    values[rows, _col(model, "harmless_kg")] = np.where(np.isnan(harmless), harmless, np.round(harmless * 0.97, 2))


def _line_down_expects(day0: int) -> list[Expected]:
    return [Expected("garbage.harmless_rate", "laoshan-plant", "garbage", "line-down", earliest=day0, latest=day0,
                     due=day0 + DAY_NS, resolves_after=day0 + DAY_NS, resolves_by=day0 + 2 * DAY_NS)]


EPISODES = [
    Episode("haze", "air", "zhonghan", "PM2.5 pollution episode at Zhonghan: hourly AQI climbs past 100, 150 and 200 "
            "through the evening (peak ~290) and clears after midnight; the day's PM2.5 breaks the 24-h limit",
            "中韩站PM2.5污染过程：傍晚起小时AQI逐级突破100、150、200（峰值约290），午夜后消散；当日PM2.5超24小时限值",
            _haze, _haze_expects),
    Episode("sale", "parking", "zhonghan-mall", "Zhonghan shopping centre lot above 90% from 13:00 to 17:00",
            "中韩商业中心停车场13:00-17:00占用率超过90%", _sale, _sale_expects),
    Episode("gale", "fire", "jufeng", "Dry gale over Jufeng: humidity 15%, wind 42 km/h, noon FWI level 4 (高)",
            "巨峰林区干燥大风：湿度15%，风速42公里/小时，午间火险等级4级（高）", _gale, _gale_expects),
    Episode("runoff", "seawater", "liuqing", "Rain runoff at the Liuqing river mouth: the buoy falls to GB 3097 class III",
            "流清河口降雨径流：浮标水质降为GB 3097第三类", _runoff, _runoff_expects),
    Episode("sewage", "surfacewater", "baisha-river", "Pumping-station failure above the Baisha river: class III at a "
            "class II section for a day", "白沙河上游泵站故障：Ⅱ类目标断面当日降为Ⅲ类", _sewage, _sewage_expects),
    Episode("line-down", "garbage", "laoshan-plant", "An incinerator line down for a day: harmless treatment 97%",
            "焚烧线停运一天：无害化处理率97%", _line_down, _line_down_expects),
]


@dataclass
class Scenario:
    """Calm days with episodes; `apply` shapes one domain's readings of one tick, `expected` lists the alerts."""

    name: str
    description: str
    days: int
    episodes: list[Episode] = field(default_factory=list)

    def __post_init__(self) -> None:
        places = [(e.domain, e.site) for e in self.episodes]
        twice = sorted({p for p in places if places.count(p) > 1})
        if twice:   # the later would overwrite the earlier's readings, and its manifest would lie
            raise ValueError(f"scenario {self.name}: two episodes shape {', '.join('/'.join(p) for p in twice)}; "
                             "give each site one episode (put both courses into one)")

    def domains(self) -> list[str]:
        return sorted({e.domain for e in self.episodes})

    def only(self, domains: list[str]) -> "Scenario":
        """The same scenario restricted to the episodes of `domains`."""
        return Scenario(self.name, self.description, self.days, [e for e in self.episodes if e.domain in domains])

    def apply(self, model: Model, t_ns: int, day0: int, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The calm city, then each episode of the model's domain on its site's sensors."""
        values = values.copy()
        every = np.arange(model.n)
        CALM[model.domain](model, values, every)
        for e in self.episodes:
            if e.domain == model.domain:
                rows = np.flatnonzero(model.sensors.site == e.site)
                if len(rows):
                    e.shape(model, t_ns, day0, values, rows, rng)
        return values

    def expected(self, day0: int) -> list[Expected]:
        return [x for e in self.episodes for x in e.expects(day0)]


SCENARIOS = {
    "demo-day": Scenario("demo-day", "two days: a breach of the plan in every domain on the first, recovery on the "
                         "second", 2, EPISODES),
    "calm": Scenario("calm", "two calm days: nothing should fire", 2, []),
}


def scenario(name: str) -> Scenario:
    """The named scenario, or an error listing the known ones."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[name]

