"""Forest fire danger: the Canadian Fire Weather Index system from daily noon weather, mapped to the
five Chinese danger levels (QX/T 77-2007), plus smoke/flame detections as immediate events.

Equations: Van Wagner & Pickett (1985), Van Wagner (1987). Codes carry from day to day; start-up
values FFMC 85, DMC 6, DC 15. Day-length factors are the standard ones (latitude above 30 N), which
Laoshan (36.1 N) uses.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from processors.buffer import Nearest, Rows, WindowState
from processors.plugin import DomainProcessor, Observation, Output, Point, day_start, indicator, local_day
from schemas.sites import expected_sites
from schemas.thresholds import PlanThresholds, load_plan

DMC_DAY_LENGTH = np.array([6.5, 7.5, 9.0, 12.8, 13.9, 13.9, 12.4, 10.9, 9.4, 8.0, 7.0, 6.0])
DC_DAY_LENGTH = np.array([-1.6, -1.6, -1.6, 0.9, 3.8, 5.8, 6.4, 5.0, 2.4, 0.4, -1.6, -1.6])
LEVEL_NAMES = {1: ("低", "low", "green"), 2: ("较低", "moderate", "blue"), 3: ("较高", "high", "yellow"),
               4: ("高", "very high", "orange"), 5: ("极高", "extreme", "red")}


class FWICodes(NamedTuple):
    """The six FWI-system values, one array each (days x stations)."""

    ffmc: np.ndarray
    dmc: np.ndarray
    dc: np.ndarray
    isi: np.ndarray
    bui: np.ndarray
    fwi: np.ndarray


def ffmc_step(ffmc0: np.ndarray, temp: np.ndarray, rh: np.ndarray, wind: np.ndarray, rain: np.ndarray) -> np.ndarray:
    """Fine Fuel Moisture Code of one day from yesterday's (Van Wagner 1987, eqs. 1-10)."""
    mo = 147.2 * (101.0 - ffmc0) / (59.5 + ffmc0)
    wet = rain > 0.5
    rf = np.where(wet, rain - 0.5, 1.0)
    gain = 42.5 * rf * np.exp(-100.0 / (251.0 - mo)) * (1.0 - np.exp(-6.93 / rf))
    gain = np.where(mo > 150.0, gain + 0.0015 * (mo - 150.0) ** 2 * np.sqrt(rf), gain)
    mo = np.where(wet, np.minimum(mo + gain, 250.0), mo)
    ed = 0.942 * rh**0.679 + 11.0 * np.exp((rh - 100.0) / 10.0) + 0.18 * (21.1 - temp) * (1.0 - np.exp(-0.115 * rh))
    ew = 0.618 * rh**0.753 + 10.0 * np.exp((rh - 100.0) / 10.0) + 0.18 * (21.1 - temp) * (1.0 - np.exp(-0.115 * rh))
    ko = 0.424 * (1.0 - (rh / 100.0) ** 1.7) + 0.0694 * np.sqrt(wind) * (1.0 - (rh / 100.0) ** 8)
    kd = ko * 0.581 * np.exp(0.0365 * temp)
    k1 = 0.424 * (1.0 - ((100.0 - rh) / 100.0) ** 1.7) + 0.0694 * np.sqrt(wind) * (1.0 - ((100.0 - rh) / 100.0) ** 8)
    kw = k1 * 0.581 * np.exp(0.0365 * temp)
    m = np.where(mo > ed, ed + (mo - ed) * 10.0 ** (-kd), np.where(mo < ew, ew - (ew - mo) * 10.0 ** (-kw), mo))
    return np.clip(59.5 * (250.0 - m) / (147.2 + m), 0.0, 101.0)


def dmc_step(dmc0: np.ndarray, temp: np.ndarray, rh: np.ndarray, rain: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Duff Moisture Code of one day from yesterday's (Van Wagner 1987, eqs. 11-17)."""
    t = np.maximum(temp, -1.1)
    k = 1.894 * (t + 1.1) * (100.0 - rh) * DMC_DAY_LENGTH[month - 1] * 1e-6
    wet = rain > 1.5
    re = 0.92 * rain - 1.27
    mo = 20.0 + np.exp(5.6348 - dmc0 / 43.43)
    safe = np.maximum(dmc0, 1e-9)
    b = np.where(dmc0 <= 33.0, 100.0 / (0.5 + 0.3 * dmc0),
                 np.where(dmc0 <= 65.0, 14.0 - 1.3 * np.log(safe), 6.2 * np.log(safe) - 17.2))
    mr = mo + 1000.0 * re / (48.77 + b * re)
    pr = np.where(wet, np.maximum(244.72 - 43.43 * np.log(np.maximum(mr - 20.0, 1e-9)), 0.0), dmc0)
    return np.maximum(pr + 100.0 * k, 0.0)


def dc_step(dc0: np.ndarray, temp: np.ndarray, rain: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Drought Code of one day from yesterday's (Van Wagner 1987, eqs. 18-23)."""
    t = np.maximum(temp, -2.8)
    pe = np.maximum((0.36 * (t + 2.8) + DC_DAY_LENGTH[month - 1]) / 2.0, 0.0)
    wet = rain > 2.8
    rd = 0.83 * rain - 1.27
    qo = 800.0 * np.exp(-dc0 / 400.0)
    qr = qo + 3.937 * rd
    dr = np.where(wet, np.maximum(400.0 * np.log(800.0 / np.maximum(qr, 1e-9)), 0.0), dc0)
    return np.maximum(dr + pe, 0.0)


def isi(ffmc: np.ndarray, wind: np.ndarray) -> np.ndarray:
    """Initial Spread Index (eqs. 24-26)."""
    fm = 147.2 * (101.0 - ffmc) / (59.5 + ffmc)
    sf = 19.115 * np.exp(-0.1386 * fm) * (1.0 + fm**5.31 / 4.93e7)
    return sf * np.exp(0.05039 * wind)


def bui(dmc: np.ndarray, dc: np.ndarray) -> np.ndarray:
    """Buildup Index (eqs. 27a-b)."""
    denom = np.maximum(dmc + 0.4 * dc, 1e-9)
    low = 0.8 * dmc * dc / denom
    high = dmc - (1.0 - 0.8 * dc / denom) * (0.92 + (0.0114 * dmc) ** 1.7)
    return np.where((dmc == 0) & (dc == 0), 0.0, np.maximum(np.where(dmc <= 0.4 * dc, low, high), 0.0))


def fwi(isi_: np.ndarray, bui_: np.ndarray) -> np.ndarray:
    """Fire Weather Index (eqs. 28-30)."""
    bb = np.where(bui_ <= 80.0, 0.1 * isi_ * (0.626 * bui_**0.809 + 2.0),
                  0.1 * isi_ * (1000.0 / (25.0 + 108.64 * np.exp(-0.023 * bui_))))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.exp(2.72 * (0.434 * np.log(np.maximum(bb, 1e-12))) ** 0.647)
    return np.where(bb <= 1.0, bb, s)


def fwi_daily(temp: np.ndarray, rh: np.ndarray, wind: np.ndarray, rain: np.ndarray, month: np.ndarray, *,
              ffmc0: float | np.ndarray = 85.0, dmc0: float | np.ndarray = 6.0, dc0: float | np.ndarray = 15.0,
              lat: float = 36.1) -> FWICodes:
    """FFMC, DMC, DC, ISI, BUI, FWI over a sequence of days (axis 0), for one or more stations.

    Inputs are noon temperature (°C), relative humidity (%), 10-m wind (km/h), 24-h rain (mm) and the
    month (1-12) of each day; codes carry from each day to the next starting from ffmc0/dmc0/dc0.
    """
    if lat <= 30.0:
        raise ValueError(f"latitude {lat}: only the standard day-length factors (latitude above 30 N) are implemented")
    temp, rh, wind, rain = (np.asarray(a, dtype=float) for a in (temp, rh, wind, rain))
    month = np.asarray(month, dtype=int)
    rh = np.clip(rh, 0.0, 100.0)
    shape = temp.shape
    f, d, c = (np.broadcast_to(np.asarray(x, float), shape[1:]).copy() for x in (ffmc0, dmc0, dc0))
    out = {k: np.empty(shape) for k in ("ffmc", "dmc", "dc")}
    for day in range(shape[0]):
        f = ffmc_step(f, temp[day], rh[day], wind[day], rain[day])
        d = dmc_step(d, temp[day], rh[day], rain[day], month[day])
        c = dc_step(c, temp[day], rain[day], month[day])
        out["ffmc"][day], out["dmc"][day], out["dc"][day] = f, d, c
    i = isi(out["ffmc"], wind)
    b = bui(out["dmc"], out["dc"])
    return FWICodes(out["ffmc"], out["dmc"], out["dc"], i, b, fwi(i, b))


def danger_level(fwi_: np.ndarray, *, at: int, plan: PlanThresholds | None = None) -> np.ndarray:
    """QX/T 77-2007 danger level 1..5 from FWI with the operator's cut points (plan file)."""
    cuts = (plan or load_plan()).get("fire.fwi_level_cuts", at).array()
    return np.searchsorted(cuts, np.asarray(fwi_, float), side="right") + 1


# -- plug-in: daily FWI per zone from the noon observation, danger levels, detections -------------------

NOON_WINDOW_NS = 3 * 3600 * 10**9
NOON_NS = 12 * 3600 * 10**9
NOON_FIELDS = ("temperature", "humidity", "wind_speed", "rain_24h")
CARRIED = ("ffmc", "dmc", "dc")  # the codes each day starts from: the previous day's


class FireProcessor(DomainProcessor):
    """Per forest zone and day: the observation nearest local noon (within 3 h) drives the FWI codes,
    carried from the previous day (from InfluxDB when not in the buffer); danger level 1-5; smoke and
    flame detections are immediate critical events."""

    domain = "fire"
    offline_target = "plan l.202: 防火监控信息化 (fire danger known for every forest zone, every day)"
    horizon_days = 3

    def new_state(self) -> WindowState:
        """Per (sensor, zone, local day): the observation nearest local noon (within 3 h) that has a
        humidity, with its temperature, wind and 24-h rain: the FWI system is driven by one noon
        observation a day, and its codes carry from the day before (from InfluxDB when that day has
        left the state). And the smoke/flame detections of the open days: events, few, reported again
        when their day is recomputed."""
        return WindowState(
            self.domain, self.horizon_days,
            noon=Nearest(NOON_NS, NOON_WINDOW_NS, NOON_FIELDS, lambda b: ~np.isnan(b.column("humidity"))),
            detections=Rows(("flame", "confidence"), lambda b: (b.column("smoke") == 1) | (b.column("flame") == 1)))

    def windows(self, state: WindowState, days: np.ndarray) -> Output:
        out = Output()
        noon = state.noon.per_site()
        first = int(days.min())
        last = max(state.newest_day() or first, first)
        sites = sorted({site for site, _ in noon})
        carried = self._carried(first)
        for day in range(first, last + 1):  # later days depend on earlier ones: recompute forward
            start = int(day_start(day))
            for site in sites:
                found = noon.get((site, day))
                if found is None:
                    continue
                obs = dict(zip(NOON_FIELDS, found))
                if any(np.isnan(v) for v in obs.values()):
                    continue
                f0, d0, c0 = carried.get(site, (85.0, 6.0, 15.0))
                month = int(np.datetime64(start + 8 * 3600 * 10**9, "ns").astype("datetime64[M]").astype(int) % 12 + 1)
                codes = fwi_daily(np.array([obs["temperature"]]), np.array([obs["humidity"]]), np.array([obs["wind_speed"]]),
                                  np.array([obs["rain_24h"]]), np.array([month]), ffmc0=f0, dmc0=d0, dc0=c0)
                carried[site] = (float(codes.ffmc[0]), float(codes.dmc[0]), float(codes.dc[0]))
                level = int(danger_level(codes.fwi, plan=self.plan, at=start)[0])
                out.points.append(Point("fire_daily", {"site": site}, {
                    **{k: round(float(getattr(codes, k)[0]), 3) for k in codes._fields}, "level": level,
                    "noon_temperature": obs["temperature"], "noon_humidity": obs["humidity"],
                    "noon_wind": obs["wind_speed"], "rain_24h": obs["rain_24h"]}, start))
                threshold = self.plan.value("alert.fire.level", start)
                name_zh, name_en, _ = LEVEL_NAMES[level]
                out.observations.append(Observation(
                    "fire.danger", site, "fire", site, "critical" if level == 5 else "major", level, threshold,
                    level >= threshold, start, f"Fire danger {name_en} ({level}) at {site}",
                    f"{site} 森林火险等级 {level} ({name_zh})", "plan l.202: 森林防火监控"))
        self._detections(out, state.detections, days)
        return out

    def _carried(self, first_day: int) -> dict[str, tuple[float, float, float]]:
        """FFMC, DMC, DC of the day before `first_day` from earlier results (start-up values if none)."""
        latest = self.history.latest("fire_daily", CARRIED, first_day - 7, first_day)
        ffmc, dmc, dc = (dict(zip(latest[c].tags["site"].tolist(), latest[c].values.tolist())) for c in CARRIED)
        return {s: (ffmc[s], dmc[s], dc[s]) for s in ffmc.keys() & dmc.keys() & dc.keys()}

    def _detections(self, out: Output, detections: Rows, days: np.ndarray) -> None:
        flames, confidences = detections.column("flame"), detections.column("confidence")
        for i in np.flatnonzero(np.isin(local_day(detections.ts), days)).tolist():
            flame, conf = bool(flames[i] == 1), float(confidences[i])
            sensor, site, ts = str(detections.sensor[i]), str(detections.site[i]), int(detections.ts[i])
            what_en, what_zh = ("flame", "明火") if flame else ("smoke", "烟雾")
            out.points.append(Point("fire_detection", {"site": site, "sensor": sensor},
                                    {"flame": int(flame), "confidence": conf}, ts))
            out.observations.append(Observation(
                "fire.detection", sensor, "fire", site, "critical", conf, 0.0, True, ts,
                f"Camera {what_en} detection at {site}", f"{site} 监控发现{what_zh}", "plan l.202: 森林防火监控信息化"))

    def district(self, days: np.ndarray, fresh: Sequence[Point] = ()) -> Output:
        """Highest level of the day, and the share of the zones that SHOULD report (site registry) whose
        level is known: a silent zone lowers it (the plan's target: every zone, every day)."""
        out = Output()
        expected = expected_sites("fire")
        for day in days:
            start = int(day_start(day))
            levels = {site: f["level"] for (site, _), f in
                      self.site_points("fire_daily", ["level"], int(day), int(day) + 1, fresh).items() if "level" in f}
            if levels:
                out.points.append(indicator("fire", "max_level", "district", float(max(levels.values())), start,
                                            source="QX/T 77-2007", zones=len(levels)))
            covered = sorted(set(levels) & set(expected))
            missing = ",".join(sorted(set(expected) - set(levels)))
            out.points.append(indicator("fire", "zones_covered", "district", len(covered) / len(expected), start,
                                        target=self.plan.value("plan.fire.zones_covered", start), source="plan l.202: fire danger known for every zone daily",
                                        zones=len(covered), registered=len(expected), missing=missing))
        return out


PROCESSOR = FireProcessor
