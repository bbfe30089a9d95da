"""Garbage sorting: the plan's rates (l.273) from what was generated, collected, treated and recovered.

- recycling rate (回收利用率) = (recyclables recovered + kitchen waste to resource treatment) / generated
- resource-utilisation rate (资源化利用率) = that plus incineration with energy recovery weighted by a
  coefficient (national usage; operator-set); the plan's 35% is shown against the recycling rate
- harmless-treatment rate (无害化处理率) = harmlessly treated / generated
- collection: a bin above 90% full that is not emptied within the deadline is overdue
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from processors.plugin import DAY_NS, DomainProcessor, Observation, Output, Point, day_start, indicator, local_day
from schemas.thresholds import PlanThresholds, load_plan


class Rates(NamedTuple):
    recycling: np.ndarray
    resource_utilisation: np.ndarray
    harmless: np.ndarray


def rates(generated: np.ndarray, recovered: np.ndarray, kitchen_resource: np.ndarray, incinerated: np.ndarray,
          harmless: np.ndarray, *, incineration_coefficient: float = 0.3) -> Rates:
    """The three rates per period (NaN where nothing was generated)."""
    gen = np.asarray(generated, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = gen > 0
        recycling = np.where(ok, (np.asarray(recovered) + np.asarray(kitchen_resource)) / gen, np.nan)
        resource = np.where(ok, recycling + incineration_coefficient * np.asarray(incinerated) / gen, np.nan)
        harmless_rate = np.where(ok, np.asarray(harmless) / gen, np.nan)
    return Rates(recycling, resource, harmless_rate)


def overdue_bins(full_since_ns: np.ndarray, now_ns: int, *, plan: PlanThresholds | None = None,
                 at: int | None = None) -> np.ndarray:
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


class GarbageProcessor(DomainProcessor):
    """Per day: generated (the plant's intake by category), recycling / resource-utilisation / harmless
    rates, and the collection rate (bins not overdue / bins reporting); per bin: overdue events."""

    domain = "garbage"
    horizon_days = 3

    def compute(self, buffer, days: np.ndarray) -> Output:  # noqa: ANN001
        out = Output()
        col = buffer.fields.index
        v = buffer.values
        day_of = local_day(buffer.ts)
        plant = ~np.isnan(v[:, col("harmless_kg")])
        bins = ~np.isnan(v[:, col("fill_level")])
        full = self.plan.value("garbage.bin_full")
        coefficient = self.plan.value("garbage.incineration_coefficient")
        for day in days:
            start = int(day_start(day))
            end = start + DAY_NS
            report = plant & (day_of == day)
            fields: dict[str, float] = {}
            if report.any():
                total = {f: float(np.nansum(v[report, col(f)])) for f in
                         CATEGORY_FIELDS + ("harmless_kg", "recovered_kg", "kitchen_resource_kg", "incinerated_kg", "landfilled_kg")}
                generated = sum(total[f] for f in CATEGORY_FIELDS)
                r = rates(np.array([generated]), np.array([total["recovered_kg"]]), np.array([total["kitchen_resource_kg"]]),
                          np.array([total["incinerated_kg"]]), np.array([total["harmless_kg"]]),
                          incineration_coefficient=coefficient)
                fields.update(total, generated_kg=generated, recycling_rate=float(r.recycling[0]),
                              resource_rate=float(r.resource_utilisation[0]), harmless_rate=float(r.harmless[0]))
            overdue = self._overdue(out, buffer, bins & (buffer.ts < end), end, start, full)
            reporting = len(set(buffer.sensor_id[bins & (day_of == day)]))
            if reporting:
                fields.update(bins=reporting, bins_overdue=overdue, collection_rate=1 - overdue / reporting)
            if not fields:
                continue
            out.points.append(Point("garbage_daily", {"scope": "district"}, fields, start))
            for name, target, source in (("recycling_rate", "plan.garbage.recycling_rate", "plan l.273 (回收利用率)"),
                                         ("harmless_rate", "plan.garbage.harmless_rate", "plan l.273"),
                                         ("collection_rate", "plan.garbage.collection_rate", "plan l.273"),
                                         ("resource_rate", None, "national weighting, coefficient in plan file")):
                if name in fields:
                    out.points.append(indicator("garbage", name, "district", fields[name], start,
                                                target=self.plan.value(target) if target else None, source=source))
        return out

    def _overdue(self, out: Output, buffer, mask: np.ndarray, at: int, day: int, full: float) -> int:  # noqa: ANN001
        """Count (and report) bins full for longer than the deadline at time `at`."""
        col = buffer.fields.index("fill_level")
        idx = np.flatnonzero(mask)
        if not len(idx):
            return 0
        order = idx[np.lexsort((buffer.ts[idx], buffer.sensor_id[idx].astype(str)))]
        sensors = buffer.sensor_id[order].astype(str)
        cuts = np.flatnonzero(sensors[1:] != sensors[:-1]) + 1
        count = 0
        deadline = self.plan.value("garbage.collection_deadline")
        for rows in np.split(order, cuts):
            since = full_since(buffer.ts[rows], buffer.values[rows, col], level=full)
            late = bool(overdue_bins(np.array([since]), at, plan=self.plan)[0])
            count += late
            hours = (at - since) / 3.6e12 if late else 0.0
            sensor, site = str(buffer.sensor_id[rows[0]]), str(buffer.site[rows[0]])
            out.observations.append(Observation(
                "garbage.bin_overdue", sensor, "garbage", site, "minor", round(hours, 2), deadline / 3600, late, day,
                f"Bin {sensor} full and not emptied", f"{sensor} 垃圾桶满溢未清运", "plan l.273: 集中清运率100%"))
        return count


PROCESSOR = GarbageProcessor
