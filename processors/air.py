"""Air quality: HJ 633-2012 IAQI/AQI and the GB 3095-2012 means behind the plan's PM2.5 target.

The plan (l.267) judges the district by the PM2.5 annual mean: better than 35 µg/m³ (binding),
striving for 33.5. Breakpoints, limits and validity rules come from the plan file (schemas/plan.toml).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from processors.buffer import Sums, WindowState
from processors.outlook import ratio_outlook
from processors.plugin import (
    DomainProcessor,
    Observation,
    Output,
    Point,
    by_local_day,
    day_start,
    hour_start,
    indicator,
    local_day,
    local_year,
)
from schemas.thresholds import PlanThresholds, load_plan

ITEMS = ("PM25_24H", "PM10_24H", "SO2_24H", "SO2_1H", "NO2_24H", "NO2_1H", "CO_24H", "CO_1H", "O3_1H", "O3_8H")
CATEGORIES = {1: ("优", "excellent", (0, 228, 0)), 2: ("良", "good", (255, 255, 0)),
              3: ("轻度污染", "lightly polluted", (255, 126, 0)), 4: ("中度污染", "moderately polluted", (255, 0, 0)),
              5: ("重度污染", "heavily polluted", (153, 0, 76)), 6: ("严重污染", "severely polluted", (126, 0, 35))}
# Items whose table stops short (HJ 633 notes a, b): above the last breakpoint there is no IAQI.
TRUNCATED = {"SO2_1H", "O3_8H"}


def iaqi(item: str, concentrations: np.ndarray, *, at: int, plan: PlanThresholds | None = None) -> np.ndarray:
    """Individual AQI of `item` for each concentration (µg/m³; CO mg/m³), rounded up as HJ 633 says,
    with the breakpoints in force on the local day of `at` (UTC ns).

    NaN where not computable: missing or negative concentration, or above the table of SO2_1H/O3_8H
    (use the 24-h / 1-h value instead). Above the top of a full table the IAQI is 500.
    """
    if item not in ITEMS:
        raise ValueError(f"unknown HJ 633 item {item!r}; one of {', '.join(ITEMS)}")
    plan = plan or load_plan()
    bp = plan.get(f"hj633.{item}", at).array()
    levels = plan.get("hj633.iaqi", at).array()[: len(bp)]
    c = np.asarray(concentrations, dtype=float)
    seg = np.clip(np.searchsorted(bp, c, side="right"), 1, len(bp) - 1)
    lo_c, hi_c, lo_i, hi_i = bp[seg - 1], bp[seg], levels[seg - 1], levels[seg]
    with np.errstate(invalid="ignore"):
        value = np.ceil(np.round((hi_i - lo_i) / (hi_c - lo_c) * (c - lo_c) + lo_i, 9))
        value = np.where(c > bp[-1], np.nan if item in TRUNCATED else levels[-1], value)
        return np.where(np.isnan(c) | (c < 0), np.nan, value)


class AQI(NamedTuple):
    """AQI and what drives it, one entry per sample."""

    aqi: np.ndarray            # max IAQI (NaN when nothing computable)
    primary: list[str]         # items with the max IAQI, when AQI > 50 ("" otherwise), comma-joined
    exceeding: list[str]       # items with IAQI > 100, comma-joined
    category: np.ndarray       # 1..6 (0 when no AQI)


def aqi(iaqis: dict[str, np.ndarray]) -> AQI:
    """AQI = max IAQI; primary pollutant(s) when AQI > 50; exceeding pollutants (IAQI > 100); category."""
    names = list(iaqis)
    table = np.vstack([np.asarray(iaqis[n], dtype=float) for n in names])
    with np.errstate(all="ignore"):
        top = np.where(np.isnan(table).all(axis=0), np.nan, np.nanmax(np.where(np.isnan(table), -1, table), axis=0))
    pollutant = [n.split("_")[0] for n in names]
    primary, exceeding = [], []
    for j in range(table.shape[1]):
        col = table[:, j]
        primary.append(",".join(dict.fromkeys(p for p, v in zip(pollutant, col) if v == top[j] and top[j] > 50)))
        exceeding.append(",".join(dict.fromkeys(p for p, v in zip(pollutant, col) if v > 100)))
    edges = np.array([50, 100, 150, 200, 300])
    category = np.where(np.isnan(top), 0, np.searchsorted(edges, np.nan_to_num(top), side="left") + 1)
    return AQI(top, primary, exceeding, category)


def hourly_aqi(means: dict[str, np.ndarray], *, at: int, plan: PlanThresholds | None = None) -> AQI:
    """Real-time hourly AQI from hourly means (µg/m³; co mg/m³) with the 1-h items where HJ 633 has
    them; SO2 above the 1-h table falls back to its 24-h breakpoints (note a)."""
    so2_1h = iaqi("SO2_1H", means["so2"], plan=plan, at=at)
    so2 = np.where(np.isnan(so2_1h) & (means["so2"] > 800), iaqi("SO2_24H", means["so2"], plan=plan, at=at), so2_1h)
    return aqi({
        "PM25_24H": iaqi("PM25_24H", means["pm25"], plan=plan, at=at),
        "PM10_24H": iaqi("PM10_24H", means["pm10"], plan=plan, at=at),
        "SO2_1H": so2,
        "NO2_1H": iaqi("NO2_1H", means["no2"], plan=plan, at=at),
        "CO_1H": iaqi("CO_1H", means["co"], plan=plan, at=at),
        "O3_1H": iaqi("O3_1H", means["o3"], plan=plan, at=at),
    })


def daily_mean(hourly: np.ndarray, min_hours: int = 20) -> np.ndarray:
    """Daily means from hourly means [days, 24]: NaN unless at least `min_hours` hours are valid
    (GB 3095-2012 Table 4)."""
    a = np.asarray(hourly, dtype=float)
    count = (~np.isnan(a)).sum(axis=1)
    total = np.nansum(a, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_hours, total / np.maximum(count, 1), np.nan)


def rolling_8h(hourly: np.ndarray, min_hours: int = 6) -> np.ndarray:
    """8-hour running means ending at each hour of a contiguous hourly series (NaN: too few hours)."""
    a = np.asarray(hourly, dtype=float)
    valid = ~np.isnan(a)
    csum = np.concatenate([[0.0], np.cumsum(np.where(valid, a, 0.0))])
    ccnt = np.concatenate([[0], np.cumsum(valid)])
    idx = np.arange(len(a))
    start = np.maximum(idx - 7, 0)
    total, count = csum[idx + 1] - csum[start], ccnt[idx + 1] - ccnt[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_hours, total / np.maximum(count, 1), np.nan)


class YearToDate(NamedTuple):
    """PM2.5 year to date against the plan, for one station or the district."""

    mean: float              # mean of the valid daily means so far
    valid_days: int
    projection: float        # the expected year-end annual mean (seasonal where history exists)
    required_rest: float     # what the remaining days must average for the binding target
    remaining_days: int
    feasible: bool           # False: even 0 µg/m³ for the rest of the year would not make it
    target: float            # 35 (binding)
    stretch: float           # 33.5
    seasonal: bool           # whether past years' seasonal pattern shaped the projection


def year_to_date(daily_means: np.ndarray, days_in_year: int, *, at: int, plan: PlanThresholds | None = None,
                 profile: np.ndarray | None = None) -> YearToDate:
    """Year-to-date PM2.5 mean of valid daily means (`daily_means[i]`: day i of the year, NaN when not
    valid), its year-end projection and the mean the remaining days need for the plan's binding target
    in force on the local day of `at`; `profile`: the seasonal profile of past years (366 days)."""
    plan = plan or load_plan()
    target = plan.value("plan.air.pm25_annual", at)
    stretch = plan.value("plan.air.pm25_annual_stretch", at)
    values = np.asarray(daily_means, float)
    elapsed = len(values)
    rest = np.ones(max(days_in_year - elapsed, 0))
    o = ratio_outlook(values, np.ones(elapsed), rest, target, lower_is_better=True,
                      profile_observed=None if profile is None else profile[:elapsed],
                      profile_rest=None if profile is None else profile[elapsed:elapsed + len(rest)])
    return YearToDate(o.current, int((~np.isnan(values)).sum()), o.projection, o.required_rest, o.remaining_days,
                      o.feasible, target, stretch, o.seasonal)


# -- plug-in: hourly and daily means, AQI, year-to-date PM2.5 ------------------------------------------

POLLUTANTS = ("pm25", "pm10", "so2", "no2", "co", "o3")


class AirProcessor(DomainProcessor):
    """Per station: hourly means and AQI, daily means (GB 3095 validity), daily max 8-h O3; per station
    and district: year-to-date PM2.5 mean against the plan's 35 / 33.5."""

    domain = "air"
    offline_target = "plan l.267 PM2.5 annual mean: GB 3095-2012 Table 4 needs >= 20 valid hours a day, 324 days a year"

    def new_state(self) -> WindowState:
        """Per (sensor, site, local hour): the sums and counts of each pollutant's present values. HJ 633
        judges the hourly AQI on the hour's means; GB 3095 judges the daily mean on the day's valid
        hourly means (20 at least) and 8-h O3 on 6 valid hours of 8 (the day's and the 7 before it):
        all of it follows from the hourly sums, so the readings are never needed again."""
        return WindowState(self.domain, self.horizon_days,
                           hours=Sums(hour_start, lambda b: b.values[:, [b.fields.index(p) for p in POLLUTANTS]]))

    def windows(self, state: WindowState, days: np.ndarray) -> Output:
        out = Output()
        hours = state.hours.site_windows(np.concatenate([days, days - 1]))
        if not hours.pairs:
            return out
        sites_hours, means, counts = hours.pairs, hours.means(), hours.counts
        hour_ts = np.array([h for _, h in sites_hours], np.int64)
        for start, rows in by_local_day(hour_ts):
            if local_day(np.array([start]))[0] in days:
                self._hourly(out, [sites_hours[i] for i in rows], means[rows], counts[rows], start)
        self._daily(out, sites_hours, means, days)
        return out

    def _hourly(self, out: Output, sites_hours: list[tuple[str, int]], means: np.ndarray, counts: np.ndarray,
                day: int) -> None:
        """Hourly means and AQI of one local day, judged by the breakpoints and alert level of that day."""
        result = hourly_aqi({p: means[:, j] for j, p in enumerate(POLLUTANTS)}, plan=self.plan, at=day)
        limit = self.plan.value("alert.air.aqi_hourly", day)
        for i, (site, hour) in enumerate(sites_hours):
            fields = {p: round(float(means[i, j]), 3) for j, p in enumerate(POLLUTANTS)}
            fields.update(aqi=result.aqi[i], category=int(result.category[i]), primary=result.primary[i],
                          exceeding=result.exceeding[i], n=int(counts[i].max()))
            out.points.append(Point("air_hourly", {"site": site}, fields, hour))
            if not np.isnan(result.aqi[i]):
                out.observations.append(Observation(
                    "air.aqi_hourly", site, "air", site, "major", float(result.aqi[i]), limit,
                    bool(result.aqi[i] > limit), hour, f"Hourly AQI at {site}", f"{site} 小时AQI",
                    "HJ 633-2012: AQI above 150 is 中度污染"))

    def _daily(self, out: Output, sites_hours: list[tuple[str, int]], means: np.ndarray, days: np.ndarray) -> None:
        by_site: dict[str, dict[int, np.ndarray]] = {}
        for (site, hour), row in zip(sites_hours, means):
            by_site.setdefault(site, {})[hour] = row
        for site, rows in by_site.items():
            for day in days:
                start = int(day_start(day))
                min_hours = int(self.plan.value("gb3095.valid_hours_per_day", start))
                min_o3 = int(self.plan.value("gb3095.valid_hours_o3_8h", start))
                grid = np.array([rows.get(start + h * 3600 * 10**9, np.full(len(POLLUTANTS), np.nan))
                                 for h in range(-7, 24)])  # 7 hours of the day before, for 8-h O3
                day_means = {p: float(daily_mean(grid[7:, j][None, :], min_hours)[0]) for j, p in enumerate(POLLUTANTS)}
                o3_8h = rolling_8h(grid[:, POLLUTANTS.index("o3")], min_o3)[7:]
                o3_8h_max = float(np.nanmax(o3_8h)) if (~np.isnan(o3_8h)).any() else float("nan")
                valid_hours = int((~np.isnan(grid[7:, 0])).sum())
                limit = self.plan.value("gb3095.pm25_24h", start)
                daily = {f"{p}": round(v, 3) for p, v in day_means.items() if p != "o3"}
                daily.update(o3_8h_max=round(o3_8h_max, 3), valid_hours=valid_hours,
                             valid=int(not np.isnan(day_means["pm25"])), pm25_limit=limit)
                if valid_hours == 0:
                    continue
                out.points.append(Point("air_daily", {"site": site}, daily, start))
                if not np.isnan(day_means["pm25"]):
                    out.observations.append(Observation(
                        "air.pm25_daily", site, "air", site, "major", day_means["pm25"], limit,
                        day_means["pm25"] > limit, start, f"Daily PM2.5 at {site}", f"{site} PM2.5日均值",
                        f"GB 3095-2012 24-h limit {limit:g} µg/m³; plan annual target 35 (33.5)"))

    def district(self, days: np.ndarray, fresh: Sequence[Point] = ()) -> Output:
        """PM2.5 of the year so far per station and for the district: every station's daily means,
        whichever processor computed them."""
        out = Output()
        written = local_day(np.array([p.ts for p in fresh if p.measurement == "air_daily"], np.int64)).tolist()
        for last_day in self.year_to_date_days(days, "air_daily", "pm25", written):
            self._year_to_date(out, fresh, last_day)
        return out

    def _year_to_date(self, out: Output, fresh: Sequence[Point], last_day: int) -> None:
        """PM2.5 of the year so far per station and district, with the year-end outlook (recomputed from
        the daily means in InfluxDB, `fresh` over them)."""
        first, days_in_year = local_year(last_day)
        last = int(day_start(last_day))
        stored = self.site_points("air_daily", ["pm25"], first, last_day + 1, fresh)
        daily = {(site, int(local_day(np.array([t]))[0])): f["pm25"] for (site, t), f in stored.items() if "pm25" in f}
        elapsed = last_day - first + 1
        grid: dict[str, np.ndarray] = {}
        for (site, d), v in daily.items():
            if first <= d <= last_day:
                grid.setdefault(site, np.full(elapsed, np.nan))[d - first] = v
        if not grid:
            return
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a day no station has: NaN, skipped
            grid["district"] = np.nanmean(np.vstack(list(grid.values())), axis=0)
        profile = self.past_profile("air_daily", "pm25", first)
        for scope, values in grid.items():
            ytd = year_to_date(values, days_in_year, plan=self.plan, at=last, profile=profile)
            out.points.append(indicator("air", "pm25_ytd", scope, ytd.mean, last, target=ytd.target,
                                        source="plan l.267", stretch=ytd.stretch, projection=ytd.projection,
                                        required_rest=ytd.required_rest, remaining_days=ytd.remaining_days,
                                        feasible=int(ytd.feasible), seasonal=int(ytd.seasonal),
                                        valid_days=ytd.valid_days))


PROCESSOR = AirProcessor
