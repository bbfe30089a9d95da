"""Nearshore sea water: GB 3097-1997 class of each sample (worst single factor), the district's class
I-II share against the plan's 100% (l.261), and a green-tide (浒苔) early-warning indicator."""
from __future__ import annotations

import numpy as np

from processors.plugin import (
    DomainProcessor,
    Observation,
    Output,
    Point,
    day_start,
    group_means,
    indicator,
    local_day,
    split_key,
)
from schemas.thresholds import PlanThresholds, load_plan

FACTORS = ("ph", "dissolved_oxygen", "cod", "inorganic_nitrogen", "phosphate", "petroleum")
CLASS_NAMES = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "劣四类 (worse than IV)"}


def factor_class(factor: str, values: np.ndarray, *, plan: PlanThresholds | None = None, at: int | None = None) -> np.ndarray:
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
                   phosphate: np.ndarray, petroleum: np.ndarray, *, plan: PlanThresholds | None = None,
                   at: int | None = None) -> np.ndarray:
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
                     *, plan: PlanThresholds | None = None, at: int | None = None) -> np.ndarray:
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

    def compute(self, buffer, days: np.ndarray) -> Output:  # noqa: ANN001
        out = Output()
        b = buffer.take(np.isin(local_day(buffer.ts), np.concatenate([days, days - 1])))
        if not len(b):
            return out
        keys = np.char.add(b.site.astype(str), np.char.add("|", day_start(local_day(b.ts)).astype(str)))
        uniq, means, _ = group_means(keys, b.values)
        f = {name: means[:, b.fields.index(name)] for name in b.fields}
        classes = seawater_class(f["ph"], f["dissolved_oxygen"], f["cod"], f["inorganic_nitrogen"],
                                 f["phosphate"], f["petroleum"], plan=self.plan)
        site_day = [split_key(k) for k in uniq]
        index = {sd: i for i, sd in enumerate(site_day)}
        prev = [index.get((s, d - 86400 * 10**9)) for s, d in site_day]
        chl_before = np.array([f["chlorophyll_a"][p] if p is not None else np.inf for p in prev])
        tur_before = np.array([f["turbidity"][p] if p is not None else np.inf for p in prev])
        tide = green_tide_level(f["chlorophyll_a"], f["turbidity"], chl_before, tur_before, plan=self.plan)
        starts = set(day_start(days).tolist())
        for d in sorted(starts):
            todays = [i for i, (_, t) in enumerate(site_day) if t == d]
            for i in todays:
                site = site_day[i][0]
                fields = {n: round(float(f[n][i]), 4) for n in b.fields}
                fields.update(water_class=classes[i], green_tide=int(tide[i]))
                out.points.append(Point("seawater_daily", {"site": site}, fields, d))
                if not np.isnan(classes[i]):
                    c = int(classes[i])
                    out.observations.append(Observation(
                        "seawater.class", site, "seawater", site, SEVERITY.get(c, "minor"), c, 2.0, c >= 3, d,
                        f"Sea-water class at {site}: {CLASS_NAMES[c]}", f"{site} 海水水质 {CLASS_NAMES[c]} 类",
                        "plan l.261: 近岸海域水质优良率100% (GB 3097-1997 class I-II)"))
                if tide[i] == 2:
                    out.observations.append(Observation(
                        "seawater.green_tide", site, "seawater", site, "major", float(f["chlorophyll_a"][i]),
                        self.plan.value("seawater.greentide.chlorophyll_a"), True, d,
                        f"Green-tide warning at {site}", f"{site} 浒苔预警", "plan l.261: 浒苔监测预警"))
            share = good_share(classes[todays]) if todays else float("nan")
            out.points.append(indicator("seawater", "good_share", "district", share, d,
                                        target=self.plan.value("plan.seawater.good_share"), source="plan l.261",
                                        sites=len(todays)))
        return out


PROCESSOR = SeawaterProcessor
