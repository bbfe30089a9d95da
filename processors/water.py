"""Nearshore sea water: GB 3097-1997 class of each sample (worst single factor), the district's class
I-II share against the plan's 100% (l.261), and a green-tide (浒苔) early-warning indicator."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from processors.buffer import Sums, WindowState, day_window
from processors.outlook import ratio_outlook
from processors.plugin import (
    DAY_NS,
    DomainProcessor,
    Observation,
    Output,
    Point,
    by_local_day,
    day_start,
    indicator,
    local_day,
    local_year,
)
from schemas.registry import domain as get_domain
from schemas.thresholds import PlanThresholds, load_plan

FACTORS = ("ph", "dissolved_oxygen", "cod", "inorganic_nitrogen", "phosphate", "petroleum")
CLASS_NAMES = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "劣四类 (worse than IV)"}


def factor_class(factor: str, values: np.ndarray, *, at: int, plan: PlanThresholds | None = None) -> np.ndarray:
    """Class 1..4 of one factor's values (5: worse than IV, NaN: not measured)."""
    plan = plan or load_plan()
    v = np.asarray(values, dtype=float)[..., None]
    if factor == "ph":
        low, high = plan.get("gb3097.ph_low", at).array(), plan.get("gb3097.ph_high", at).array()
        meets = (v >= low) & (v <= high)
    elif factor == "dissolved_oxygen":
        meets = v > plan.get("gb3097.dissolved_oxygen", at).array()
    else:
        meets = v <= plan.get(f"gb3097.{factor}", at).array()
    first = np.where(meets.any(axis=-1), meets.argmax(axis=-1) + 1, 5).astype(float)
    return np.where(np.isnan(v[..., 0]), np.nan, first)


def seawater_class(ph: np.ndarray, do: np.ndarray, cod: np.ndarray, inorganic_n: np.ndarray,
                   phosphate: np.ndarray, petroleum: np.ndarray, *, at: int,
                   plan: PlanThresholds | None = None) -> np.ndarray:
    """GB 3097-1997 class per sample: the worst class over the measured factors (1..4, 5 worse than
    IV, NaN when no factor was measured)."""
    classes = np.stack([factor_class(f, v, plan=plan, at=at)
                        for f, v in zip(FACTORS, (ph, do, cod, inorganic_n, phosphate, petroleum))])
    with np.errstate(invalid="ignore"):
        worst = np.nanmax(np.where(np.isnan(classes), -1, classes), axis=0)
    return np.where(worst < 0, np.nan, worst)


def good_share(site_classes: np.ndarray) -> float:
    """Share of sites (with a class) in class I or II: the plan's 近岸海域水质优良率."""
    c = np.asarray(site_classes, dtype=float)
    c = c[~np.isnan(c)]
    return float((c <= 2).mean()) if len(c) else float("nan")


def green_tide_level(chl: np.ndarray, turbidity: np.ndarray, chl_before: np.ndarray, turbidity_before: np.ndarray,
                     *, at: int, plan: PlanThresholds | None = None) -> np.ndarray:
    """0 none, 1 watch (chlorophyll-a above its threshold), 2 warning (chlorophyll-a and turbidity both
    above their thresholds and both rising against the previous period)."""
    plan = plan or load_plan()
    chl_t = plan.value("seawater.greentide.chlorophyll_a", at)
    tur_t = plan.value("seawater.greentide.turbidity", at)
    chl, tur = np.asarray(chl, float), np.asarray(turbidity, float)
    with np.errstate(invalid="ignore"):
        watch = chl > chl_t
        warning = watch & (tur > tur_t) & (chl > chl_before) & (tur > turbidity_before)
    return np.where(warning, 2, np.where(watch, 1, 0))


# -- plug-in: daily class per site, the district's class I-II share, green tide ------------------------

SEVERITY = {3: "minor", 4: "major", 5: "critical"}


class SeawaterProcessor(DomainProcessor):
    """Per buoy and day: factor means, GB 3097 class, green-tide level; district: class I-II share."""

    domain = "seawater"
    offline_target = "plan l.261: 近岸海域水质优良率100% (every nearshore site classed daily)"

    def new_state(self) -> WindowState:
        """Per (sensor, buoy, local day): sums and counts of every factor's present values. GB 3097 is
        judged on the day's means and the green-tide warning compares them with the day before's, so
        the daily sums are all it needs."""
        return WindowState(self.domain, self.horizon_days, days=Sums(day_window, lambda b: b.values))

    def windows(self, state: WindowState, days: np.ndarray) -> Output:
        out = Output()
        daily = state.days.site_windows(np.concatenate([days, days - 1]))
        if not daily.pairs:
            return out
        site_day, means, names = daily.pairs, daily.means(), get_domain(self.domain).fields
        f = {name: means[:, j] for j, name in enumerate(names)}
        day_ts = np.array([d for _, d in site_day], np.int64)
        index = {sd: i for i, sd in enumerate(site_day)}
        prev = [index.get((s, d - DAY_NS)) for s, d in site_day]
        chl_before = np.array([f["chlorophyll_a"][p] if p is not None else np.inf for p in prev])
        tur_before = np.array([f["turbidity"][p] if p is not None else np.inf for p in prev])
        wanted = set(day_start(days).tolist())
        for d, todays in by_local_day(day_ts):
            if d not in wanted:
                continue
            part = {name: values[todays] for name, values in f.items()}
            classes = seawater_class(*(part[name] for name in FACTORS), plan=self.plan, at=d)
            tide = green_tide_level(part["chlorophyll_a"], part["turbidity"], chl_before[todays], tur_before[todays],
                                    plan=self.plan, at=d)
            chl_limit = self.plan.value("seawater.greentide.chlorophyll_a", d)
            for k, i in enumerate(todays):
                site = site_day[i][0]
                fields = {n: round(float(f[n][i]), 4) for n in names}
                fields.update(water_class=classes[k], green_tide=int(tide[k]))
                out.points.append(Point("seawater_daily", {"site": site}, fields, d))
                if not np.isnan(classes[k]):
                    c = int(classes[k])
                    out.observations.append(Observation(
                        "seawater.class", site, "seawater", site, SEVERITY.get(c, "minor"), c, 2.0, c >= 3, d,
                        f"Sea-water class at {site}: {CLASS_NAMES[c]}", f"{site} 海水水质 {CLASS_NAMES[c]} 类",
                        "plan l.261: 近岸海域水质优良率100% (GB 3097-1997 class I-II)"))
                if tide[k] == 2:
                    out.observations.append(Observation(
                        "seawater.green_tide", site, "seawater", site, "major", float(part["chlorophyll_a"][k]),
                        chl_limit, True, d, f"Green-tide warning at {site}", f"{site} 浒苔预警", "plan l.261: 浒苔监测预警"))
        return out

    def district(self, days: np.ndarray, fresh: Sequence[Point] = ()) -> Output:
        """Per day, the class I-II share of the buoys (every buoy's daily class, whichever processor
        computed it), and the share of the year so far."""
        out = Output()
        for day in np.unique(days).tolist():
            d = int(day_start(day))
            buoys = self.site_points("seawater_daily", ["water_class", "green_tide"], day, day + 1, fresh)
            if not buoys:
                continue
            classes = np.array([f.get("water_class", np.nan) for _, f in sorted(buoys.items())])
            good = int(np.sum(classes <= 2))
            measured = int(np.sum(~np.isnan(classes)))
            out.points.append(indicator("seawater", "good_share", "district", good_share(classes), d,
                                        target=self.plan.value("plan.seawater.good_share", d), source="plan l.261",
                                        sites=len(buoys), good_sites=good, classed_sites=measured))
        written = local_day(np.array([p.ts for p in out.points], np.int64)).tolist()
        for last_day in self.year_to_date_days(days, "indicator", "classed_sites", written,
                                               tags={"domain": "seawater", "indicator": "good_share"}):
            self._year_to_date(out, last_day)
        return out

    def _year_to_date(self, out: Output, last_day: int) -> None:
        """Class I-II share of the year's site-days so far (good / classed) and its year-end outlook: the
        share the rest of the year must keep for the plan's 100% (infeasible once one site-day missed)."""
        first, days_in_year = local_year(last_day)
        last = int(day_start(last_day))
        tags = {"domain": "seawater", "indicator": "good_share"}
        counts = {}
        for name in ("good_sites", "classed_sites"):
            past = self.history.daily("indicator", name, first, last_day + 1, tags=tags)
            counts[name] = dict(zip(past.days.tolist(), past.values.tolist()))
        for p in out.points:
            if p.measurement == "indicator" and p.tags["indicator"] == "good_share":
                d = int(local_day(np.array([p.ts]))[0])
                counts["good_sites"][d], counts["classed_sites"][d] = p.fields["good_sites"], p.fields["classed_sites"]
        observed = sorted(d for d, n in counts["classed_sites"].items() if n > 0 and first <= d <= last_day)
        if not observed:
            return
        good = np.array([counts["good_sites"].get(d, 0.0) for d in observed])
        classed = np.array([counts["classed_sites"][d] for d in observed])
        remaining = days_in_year - (last_day - first + 1)
        target = self.plan.value("plan.seawater.good_share", last)
        profile = self.past_profile("indicator", "value", first, tags)
        index = np.array(observed) - first
        o = ratio_outlook(good, classed, np.full(remaining, float(classed.mean())), target, bounds=(0.0, 1.0),
                          profile_observed=None if profile is None else profile[index],
                          profile_rest=None if profile is None else profile[days_in_year - remaining:days_in_year])
        out.points.append(indicator("seawater", "good_share_ytd", "district", o.current, last, target=target,
                                    source="plan l.261, year to date (site-days)", projection=o.projection,
                                    required_rest=o.required_rest, remaining_days=o.remaining_days,
                                    feasible=int(o.feasible), seasonal=int(o.seasonal), days=len(observed)))


PROCESSOR = SeawaterProcessor
