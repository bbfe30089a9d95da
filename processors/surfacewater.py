"""Surface and drinking water: GB 3838-2002 class of each site and day (worst single factor, 劣Ⅴ when a
factor meets no class), whether the site meets its designated class, and the plan's l.269 targets:
the Laoshan reservoir at its designated class, every district section up to standard, no 劣Ⅴ water body.

The daily class is judged on daily means. Lakes and reservoirs (sites of kind "reservoir" or "lake")
use GB 3838's 湖、库 total-phosphorus limits and are also judged on total nitrogen; rivers (and sites
missing from the registry) use the river limits and no total nitrogen. Designated classes are plan
data (`surfacewater.designated_class.<site>`); a site without one is classed but not judged against
a target, and is left out of the shares (it still counts as a 劣Ⅴ water body).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Mapping

import numpy as np

from infra.logs import event
from processors.buffer import Sums, WindowState, day_window
from processors.plugin import DomainProcessor, History, Observation, Output, Point, day_start, indicator, local_day
from schemas.registry import domain as get_domain
from schemas.sites import sites_for
from schemas.surfacewater import LAKE_KINDS, Day, designated_classes
from schemas.thresholds import PlanThresholds, load_plan

FACTORS = ("ph", "dissolved_oxygen", "permanganate_index", "cod", "bod5", "ammonia_nitrogen", "total_phosphorus",
           "total_nitrogen")
WORSE_THAN_V = 6
EPOCH = dt.date(1970, 1, 1)  # local day 0
log = logging.getLogger("smartcity.processor.surfacewater")
CLASS_NAMES = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "劣V"}


def _row(plan: PlanThresholds, key: str, at: Day) -> np.ndarray:
    return plan.get(key, at).array()


def factor_class(factor: str, values: np.ndarray, lake: np.ndarray | bool = False, *,
                 plan: PlanThresholds | None = None, at: Day) -> np.ndarray:
    """Class 1..5 of one factor's values, 6 when it meets no class (劣Ⅴ); NaN where not measured or
    where the factor does not apply (total nitrogen of a river). `lake`: per value, lake/reservoir."""
    if factor not in FACTORS:
        raise ValueError(f"{factor!r} is not a GB 3838 class factor; use one of {', '.join(FACTORS)}")
    plan = plan or load_plan()
    v = np.asarray(values, dtype=float)
    lake = np.broadcast_to(np.asarray(lake, dtype=bool), v.shape)
    x = v[..., None]
    if factor == "ph":
        meets = (x >= _row(plan, "gb3838.ph_low", at)) & (x <= _row(plan, "gb3838.ph_high", at))
    elif factor == "dissolved_oxygen":
        meets = x >= _row(plan, "gb3838.dissolved_oxygen", at)
    elif factor == "total_phosphorus":
        limits = np.where(lake[..., None], _row(plan, "gb3838.total_phosphorus.lake", at),
                          _row(plan, "gb3838.total_phosphorus.river", at))
        meets = x <= limits
    elif factor == "total_nitrogen":
        meets = x <= _row(plan, "gb3838.total_nitrogen.lake", at)
        v = np.where(lake, v, np.nan)
    else:
        meets = x <= _row(plan, f"gb3838.{factor}", at)
    best = np.where(meets.any(axis=-1), meets.argmax(axis=-1) + 1, WORSE_THAN_V).astype(float)
    return np.where(np.isnan(v), np.nan, best)


def factor_classes(columns: Mapping[str, np.ndarray], lake: np.ndarray | bool = False, *,
                   plan: PlanThresholds | None = None, at: Day) -> np.ndarray:
    """[factor, sample] classes of the GB 3838 factors present in `columns` (absent ones: NaN rows)."""
    plan = plan or load_plan()
    n = len(next(iter(columns.values())))
    return np.stack([factor_class(f, columns[f], lake, plan=plan, at=at) if f in columns else np.full(n, np.nan)
                     for f in FACTORS])


def water_class(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class per sample: the worst factor's, NaN when none was judged; index into FACTORS of the first
    factor at that class, -1 when none) from `factor_classes`."""
    filled = np.where(np.isnan(classes), -1, classes)
    worst = filled.max(axis=0)
    limiting = np.where(worst >= 0, filled.argmax(axis=0), -1)
    return np.where(worst >= 0, worst, np.nan), limiting


def meets_designated(classes: np.ndarray, designated: np.ndarray) -> np.ndarray:
    """1.0 where the class is at or better than the designated class, 0.0 where worse, NaN where either
    is unknown."""
    c, d = np.asarray(classes, float), np.asarray(designated, float)
    return np.where(np.isnan(c) | np.isnan(d), np.nan, (c <= d).astype(float))


def share_meeting(meets: np.ndarray) -> float:
    """Share of the judged sites that meet their designated class (NaN when none was judged)."""
    m = np.asarray(meets, float)
    m = m[~np.isnan(m)]
    return float(m.mean()) if len(m) else float("nan")


# -- plug-in: daily class per site, its designated class, the district's l.269 indicators --------------

TARGET_RESERVOIR = "plan l.269: 崂山水库辖区汇水区域内水质保持稳定达标"
TARGET_SECTIONS = "plan l.269: 区控断面全面达标"
TARGET_NO_WORSE_THAN_V = "plan l.269: 巩固消除劣Ⅴ类水体成果"


def _severity(cls: int, designated: float, lake: bool) -> str:
    """劣Ⅴ is critical; a miss at the drinking-water reservoir, or by two classes or more, is major."""
    if cls == WORSE_THAN_V:
        return "critical"
    return "major" if lake or cls - designated >= 2 else "minor"


class SurfacewaterProcessor(DomainProcessor):
    """Per site and local day: factor means, GB 3838 class, designated class met or not; per day: the
    reservoir at its designated class, the share of district sections up to standard, 劣Ⅴ count."""

    domain = "surfacewater"
    offline_target = "plan l.269: 断面全面达标 (every section and the reservoir classed daily)"

    def __init__(self, plan: PlanThresholds, history: History) -> None:
        super().__init__(plan, history)
        self.lakes = frozenset(s.id for s in sites_for(self.domain) if s.kind in LAKE_KINDS)

    def new_state(self) -> WindowState:
        """Per (sensor, site, local day): sums and counts of every factor's present values. GB 3838's
        daily class is judged on the day's means (worst factor), and the district's shares on the
        sites' classes, so the daily sums are all it needs."""
        return WindowState(self.domain, self.horizon_days, days=Sums(day_window, lambda b: b.values))

    def windows(self, state: WindowState, days: np.ndarray) -> Output:
        out = Output()
        daily = state.days.site_windows(days)
        if not daily.pairs:
            return out
        names = get_domain(self.domain).fields
        site_day = [(site, int(local_day(np.array([start]))[0])) for site, start in daily.pairs]
        means = daily.means()
        sites = np.array([s for s, _ in site_day], dtype=object)
        day_numbers = np.array([n for _, n in site_day], dtype=np.int64)
        lake = np.isin(sites, list(self.lakes))
        for n in np.unique(day_numbers):
            today = np.flatnonzero(day_numbers == n)
            d, at = int(day_start(n)), EPOCH + dt.timedelta(days=int(n))   # the plan is dated in local days
            columns = {name: means[today, j] for j, name in enumerate(names)}
            try:
                classes, limiting = water_class(factor_classes(columns, lake[today], plan=self.plan, at=at))
            except KeyError as exc:  # no GB 3838 entry in force that day (a clock set before 2002-06-01)
                event(log, "day_not_judged", logging.WARNING, domain=self.domain, day=str(at), sites=len(today),
                      reason=str(exc), fix="the raw readings are kept; add the standard in force to the plan")
                continue
            designated = designated_classes(sites[today], self.plan, at)
            meets = meets_designated(classes, designated)
            for k, i in enumerate(today):
                out.points.append(self._daily_point(sites[i], lake[i], columns, k, classes[k], limiting[k],
                                                    designated[k], meets[k], d))
                out.observations.extend(self._observations(sites[i], lake[i], classes[k], designated[k], d))
        return out

    def district(self, days: np.ndarray, fresh: Sequence[Point] = ()) -> Output:
        """Per day, the l.269 indicators from every site's daily class (whichever processor computed it)."""
        out = Output()
        for day in np.unique(days).tolist():
            found = self.site_points("surfacewater_daily", ["water_class", "meets_designated"], day, day + 1, fresh,
                                     keep=("site", "waterbody"))
            if not found:
                continue
            rows = [f for _, f in sorted(found.items())]
            lake = np.array([waterbody == "reservoir" for (_, waterbody, _) in sorted(found)])
            classes = np.array([f.get("water_class", np.nan) for f in rows])
            meets = np.array([f.get("meets_designated", np.nan) for f in rows])
            self._indicators(out, lake, classes, meets, int(day_start(day)), EPOCH + dt.timedelta(days=int(day)))
        return out

    def _daily_point(self, site: str, lake: bool, columns: dict[str, np.ndarray], k: int, cls: float,
                     limiting: int, designated: float, meets: float, d: int) -> Point:
        fields: dict[str, object] = {n: round(float(v[k]), 4) for n, v in columns.items()}
        if not np.isnan(cls):
            fields.update(water_class=int(cls), limiting_factor=FACTORS[limiting])
        if not np.isnan(designated):
            fields["designated_class"] = int(designated)
        if not np.isnan(meets):
            fields["meets_designated"] = int(meets)
        return Point("surfacewater_daily", {"site": site, "waterbody": "reservoir" if lake else "river"}, fields, d)

    def _observations(self, site: str, lake: bool, cls: float, designated: float, d: int) -> list[Observation]:
        if np.isnan(cls):
            return []
        c = int(cls)
        name = CLASS_NAMES[c]
        found = []
        if not np.isnan(designated):
            target = CLASS_NAMES[int(designated)]
            found.append(Observation(
                "surfacewater.designated_class", site, self.domain, site, _severity(c, designated, lake), c,
                float(designated), bool(c > designated), d, f"Water class at {site}: {name} against designated {target}",
                f"{site} 水质 {name} 类，目标 {target} 类", TARGET_RESERVOIR if lake else TARGET_SECTIONS))
        found.append(Observation(
            "surfacewater.worse_than_v", site, self.domain, site, "critical", c, 5.0, c == WORSE_THAN_V, d,
            f"Water worse than class V at {site}", f"{site} 劣Ⅴ类水体", TARGET_NO_WORSE_THAN_V))
        return found

    def _indicators(self, out: Output, lake: np.ndarray, classes: np.ndarray, meets: np.ndarray, d: int,
                    at: dt.date) -> None:
        for name, mask, source in (("reservoir_at_designated", lake, TARGET_RESERVOIR),
                                   ("sections_up_to_standard", ~lake, TARGET_SECTIONS)):
            share = share_meeting(meets[mask])
            if not np.isnan(share):
                out.points.append(indicator(self.domain, name, "district", share, d, source=source,
                                            target=self._target(name, at),
                                            sites=int((~np.isnan(meets[mask])).sum())))
        judged = ~np.isnan(classes)
        if judged.any():
            out.points.append(indicator(self.domain, "worse_than_v", "district",
                                        float((classes == WORSE_THAN_V).sum()),  # a float, as `value` is in every domain
                                        d, target=self._target("worse_than_v", at),
                                        source=TARGET_NO_WORSE_THAN_V, sites=int(judged.sum())))


    def _target(self, name: str, at: dt.date) -> float | None:
        """The plan's target in force on `at` (None before the plan: the indicator is still written)."""
        try:
            return self.plan.value(f"plan.surfacewater.{name}", at)
        except KeyError:
            return None


PROCESSOR = SurfacewaterProcessor
