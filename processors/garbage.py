"""Garbage sorting: the plan's rates (l.273) from what was generated, collected, treated and recovered.

- recycling rate (回收利用率) = (recyclables recovered + kitchen waste to resource treatment) / generated
- resource-utilisation rate (资源化利用率) = that plus incineration with energy recovery weighted by a
  coefficient (national usage; operator-set); the plan's 35% is shown against the recycling rate
- harmless-treatment rate (无害化处理率) = harmlessly treated / generated
- collection: a bin above 90% full that is not emptied within the deadline is overdue (collection rate =
  bins not overdue / bins known that day)
Every rate is bounded to [0, 1]: inputs that would push one outside (more recovered than generated, a
negative mass) are clipped and flagged `inconsistent=1` with the reason, and logged, never shown as a
rate above 100% or below 0.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from infra.logs import event
from processors.buffer import Rows, Sums, WindowState, day_window
from processors.outlook import ratio_outlook
from processors.plugin import (
    DAY_NS,
    DomainProcessor,
    Observation,
    Output,
    Point,
    bounded_share,
    day_start,
    factorize,
    indicator,
    local_day,
    local_year,
)
from schemas.thresholds import PlanThresholds, load_plan

log = logging.getLogger("smartcity.processor.garbage")


class Rates(NamedTuple):
    recycling: np.ndarray
    resource_utilisation: np.ndarray
    harmless: np.ndarray
    inconsistent: np.ndarray   # True where an input pushed a rate outside [0, 1] (clipped)
    reason: list[str]          # why, per period ("" when consistent)


def rates(generated: np.ndarray, recovered: np.ndarray, kitchen_resource: np.ndarray, incinerated: np.ndarray,
          harmless: np.ndarray, *, incineration_coefficient: float = 0.3) -> Rates:
    """The three rates per period, bounded to [0, 1] (NaN where nothing was generated), and which
    periods had inconsistent inputs."""
    gen = np.asarray(generated, float)
    recycled = np.asarray(recovered, float) + np.asarray(kitchen_resource, float)
    recycling, bad_r = bounded_share(recycled, gen)
    weighted = recycled + incineration_coefficient * np.asarray(incinerated, float)
    resource, bad_u = bounded_share(weighted, gen)
    harmless_rate, bad_h = bounded_share(np.asarray(harmless, float), gen)
    reason = ["; ".join(text for bad, text in ((bad_r[i], "recovered + kitchen to resource outside [0, generated]"),
                                                (bad_u[i], "weighted resource use outside [0, generated]"),
                                                (bad_h[i], "harmlessly treated outside [0, generated]")) if bad)
              for i in range(len(gen))]
    return Rates(recycling, resource, harmless_rate, bad_r | bad_u | bad_h, reason)


def overdue_bins(full_since_ns: np.ndarray, now_ns: int, *, at: int, plan: PlanThresholds | None = None) -> np.ndarray:
    """True for bins full (>= the full level) for longer than the collection deadline."""
    deadline = (plan or load_plan()).value("garbage.collection_deadline", at) * 1e9
    since = np.asarray(full_since_ns, float)
    return ~np.isnan(since) & ((now_ns - since) > deadline)


def full_since(ts: np.ndarray, fill: np.ndarray, *, level: float) -> float:
    """Start of the current run of readings at or above `level` in one bin's time-ordered series
    (NaN when the latest reading is below it)."""
    fill = np.asarray(fill, float)
    if not len(fill) or not fill[-1] >= level:
        return float("nan")
    below = np.flatnonzero(~(fill >= level))
    return float(ts[below[-1] + 1] if len(below) else ts[0])


# -- plug-in: daily rates from the plant's report, overdue bins -----------------------------------------


CATEGORY_FIELDS = ("recyclable_kg", "hazardous_kg", "kitchen_kg", "residual_kg")
PLANT_FIELDS = CATEGORY_FIELDS + ("harmless_kg", "recovered_kg", "kitchen_resource_kg", "incinerated_kg", "landfilled_kg")
SITE_FIELDS = PLANT_FIELDS + ("plant_reports", "bins", "bins_overdue", "bins_reporting")


class GarbageProcessor(DomainProcessor):
    """Per day: generated (the plant's intake by category), recycling / resource-utilisation / harmless
    rates, and the collection rate (bins not overdue / bins known); per bin: overdue events; the
    recycling rate of the year so far with its year-end outlook."""

    domain = "garbage"
    offline_target = "plan l.273: 集中清运率100% (every bin's fill level known, overdue bins found)"
    horizon_days = 3

    def new_state(self) -> WindowState:
        """Per (sensor, site, local day): the sums of the plant's report fields (the day's rates are
        ratios of the day's totals); and each bin's fill levels with their times (the collection rule
        needs the run of full readings before each day's end, which a late reading can split or join;
        bins report a few times an hour, and only ts and level are kept)."""
        return WindowState(self.domain, self.horizon_days,
                           plant=Sums(day_window, lambda b: b.values[:, [b.fields.index(f) for f in PLANT_FIELDS]],
                                      lambda b: ~np.isnan(b.column("harmless_kg"))),
                           bins=Rows(("fill_level",), lambda b: ~np.isnan(b.column("fill_level"))))

    def windows(self, state: WindowState, days: np.ndarray) -> Output:
        """Per site and day, the parts of the district's figures (`garbage_site`: the plant's report
        totals, bins known up to the day's end, overdue and reporting that day); per bin, overdue events."""
        out = Output()
        bins: Rows = state.bins
        bin_day = local_day(bins.ts)
        for day in days:
            start = int(day_start(day))
            end = start + DAY_NS
            full = self.plan.value("garbage.bin_full", start)
            report = state.plant.site_windows(np.array([day]))
            parts: dict[str, dict[str, float]] = {}
            for i, (site, _) in enumerate(report.pairs):
                parts[site] = {**dict(zip(PLANT_FIELDS, report.sums[i].tolist())),
                               "plant_reports": int(report.readings[i])}
            known = bins.ts < end  # every bin seen up to the day's end: the overdue ones included
            for site in sorted(set(bins.site[known].tolist())):
                here = known & (bins.site == site)
                overdue = self._overdue(out, bins, here, end, start, full)
                parts.setdefault(site, {}).update(bins=len(set(bins.sensor[here].tolist())), bins_overdue=overdue,
                                                  bins_reporting=int(((bin_day == day) & (bins.site == site)).sum()))
            out.points += [Point("garbage_site", {"site": site}, fields, start) for site, fields in sorted(parts.items())]
        return out

    def district(self, days: np.ndarray, fresh: Sequence[Point] = ()) -> Output:
        """Per day, the plant's rates and the collection rate from every site's parts (whichever
        processor computed them), and the recycling rate of the year so far."""
        out = Output()
        for day in np.unique(days).tolist():
            start = int(day_start(day))
            coefficient = self.plan.value("garbage.incineration_coefficient", start)
            found = sorted(self.site_points("garbage_site", SITE_FIELDS, day, day + 1, fresh).items())
            sites = [f for _, f in found]
            fields: dict[str, float] = {}
            plants = [f for f in sites if f.get("plant_reports", 0) > 0]
            plant_sites = [key[0] for key, f in found if f.get("plant_reports", 0) > 0]
            if plants:
                total = {f: float(sum(p.get(f, 0.0) for p in plants)) for f in PLANT_FIELDS}
                generated = sum(total[f] for f in CATEGORY_FIELDS)
                r = rates(np.array([generated]), np.array([total["recovered_kg"]]), np.array([total["kitchen_resource_kg"]]),
                          np.array([total["incinerated_kg"]]), np.array([total["harmless_kg"]]),
                          incineration_coefficient=coefficient)
                fields.update(total, generated_kg=generated, recycling_rate=float(r.recycling[0]),
                              resource_rate=float(r.resource_utilisation[0]), harmless_rate=float(r.harmless[0]))
                if r.inconsistent[0]:
                    fields.update(inconsistent=1, reason=r.reason[0])
                    event(log, "inconsistent_garbage_report", logging.WARNING, day=start, reason=r.reason[0],
                          generated_kg=generated, recovered_kg=total["recovered_kg"],
                          kitchen_resource_kg=total["kitchen_resource_kg"], harmless_kg=total["harmless_kg"])
            bins_known = int(sum(f.get("bins", 0) for f in sites))
            overdue = int(sum(f.get("bins_overdue", 0) for f in sites))
            if bins_known and sum(f.get("bins_reporting", 0) for f in sites) > 0:
                fields.update(bins=bins_known, bins_overdue=overdue,
                              collection_rate=float(bounded_share(np.array([bins_known - overdue]),
                                                                  np.array([bins_known]))[0][0]))
            if not fields:
                continue
            if "harmless_rate" in fields:
                # the entity is the plant; several plants share one district rate
                self._harmless(out, plant_sites[0] if len(plant_sites) == 1 else "district", fields["harmless_rate"], start)
            out.points.append(Point("garbage_daily", {"scope": "district"}, fields, start))
            extra = {"inconsistent": 1, "reason": fields["reason"]} if "reason" in fields else {}
            for name, target, source in (("recycling_rate", "plan.garbage.recycling_rate", "plan l.273 (回收利用率)"),
                                         ("harmless_rate", "plan.garbage.harmless_rate", "plan l.273"),
                                         ("collection_rate", "plan.garbage.collection_rate", "plan l.273"),
                                         ("resource_rate", None, "national weighting, coefficient in plan file")):
                if name in fields:
                    out.points.append(indicator("garbage", name, "district", fields[name], start,
                                                target=self.plan.value(target, start) if target else None,
                                                source=source, **(extra if name != "collection_rate" else {})))
        written = local_day(np.array([p.ts for p in out.points if p.measurement == "garbage_daily"
                                      and "generated_kg" in p.fields], np.int64)).tolist()
        for last_day in self.year_to_date_days(np.unique(days), "garbage_daily", "generated_kg", written):
            self._year_to_date(out, last_day)
        return out

    def _harmless(self, out: Output, plant: str, rate: float, day: int) -> None:
        """The day's harmless-treatment rate at the plant against the plan's 100% (rule garbage.harmless_rate).
        A millionth below is float rounding of the kilogram sums, not waste left untreated."""
        target = self.plan.value("plan.garbage.harmless_rate", day)
        out.observations.append(Observation(
            "garbage.harmless_rate", plant, "garbage", plant, "major", round(rate, 4), target, rate < target - 1e-6, day,
            f"Harmless treatment {rate:.1%} at {plant} (target {target:.0%})",
            f"{plant} 生活垃圾无害化处理率 {rate:.1%}（目标 {target:.0%}）", "plan l.273: 生活垃圾无害化处理率达到100%"))

    def _year_to_date(self, out: Output, last_day: int) -> None:
        """Recycling rate of the year so far (recycled kg / generated kg) with its year-end outlook: the
        rate the rest of the year's waste must reach for the plan's 35%."""
        first, days_in_year = local_year(last_day)
        last = int(day_start(last_day))
        per_day: dict[str, dict[int, float]] = {}
        for name in ("generated_kg", "recovered_kg", "kitchen_resource_kg"):
            past = self.history.daily("garbage_daily", name, first, last_day + 1)
            per_day[name] = dict(zip(past.days.tolist(), past.values.tolist()))
        for p in out.points:  # this batch's days replace what InfluxDB had
            if p.measurement == "garbage_daily" and "generated_kg" in p.fields:
                d = int(local_day(np.array([p.ts]))[0])
                for name in per_day:
                    per_day[name][d] = p.fields[name]
        gen_days = sorted(d for d in per_day["generated_kg"] if first <= d <= last_day)
        if not gen_days:
            return
        generated = np.array([per_day["generated_kg"][d] for d in gen_days])
        recycled = np.array([per_day["recovered_kg"].get(d, 0.0) + per_day["kitchen_resource_kg"].get(d, 0.0)
                             for d in gen_days])
        remaining = days_in_year - (last_day - first + 1)
        profile = self.past_profile("garbage_daily", "recycling_rate", first)
        index = np.array(gen_days) - first
        target = self.plan.value("plan.garbage.recycling_rate", last)
        o = ratio_outlook(recycled, generated, np.full(remaining, float(generated.mean())), target,
                          bounds=(0.0, 1.0), profile_observed=None if profile is None else profile[index],
                          profile_rest=None if profile is None else profile[days_in_year - remaining:days_in_year])
        value, bad = bounded_share(np.array([recycled.sum()]), np.array([generated.sum()]))
        out.points.append(indicator("garbage", "recycling_rate_ytd", "district", float(value[0]), last, target=target,
                                    source="plan l.273 (回收利用率), year to date", projection=o.projection,
                                    required_rest=o.required_rest, remaining_days=o.remaining_days,
                                    feasible=int(o.feasible), seasonal=int(o.seasonal), inconsistent=int(bad[0]),
                                    days=len(gen_days)))

    def _overdue(self, out: Output, bins: Rows, mask: np.ndarray, at: int, day: int, full: float) -> int:
        """Count (and report) bins full for longer than the deadline at time `at`."""
        idx = np.flatnonzero(mask)
        if not len(idx):
            return 0
        fill = bins.column("fill_level")
        _, sensor = factorize(bins.sensor[idx])
        by_sensor = np.lexsort((bins.ts[idx], sensor))
        order, sensor = idx[by_sensor], sensor[by_sensor]
        cuts = np.flatnonzero(sensor[1:] != sensor[:-1]) + 1
        count = 0
        deadline = self.plan.value("garbage.collection_deadline", day)
        for rows in np.split(order, cuts):
            since = full_since(bins.ts[rows], fill[rows], level=full)
            late = bool(overdue_bins(np.array([since]), at, plan=self.plan, at=day)[0])
            count += late
            hours = (at - since) / 3.6e12 if late else 0.0
            sensor, site = str(bins.sensor[rows[0]]), str(bins.site[rows[0]])
            out.observations.append(Observation(
                "garbage.bin_overdue", sensor, "garbage", site, "minor", round(hours, 2), deadline / 3600, late, day,
                f"Bin {sensor} full and not emptied", f"{sensor} 垃圾桶满溢未清运", "plan l.273: 集中清运率100%"))
        return count


PROCESSOR = GarbageProcessor
