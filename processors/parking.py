"""Parking: occupancy per lot, saturation, the networked-management rate and spaces added.

The plan asks for every commercial lot networked (l.192) and 20,000 new public spaces (l.163).
A lot is networked while it reports within its heartbeat window.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from processors.buffer import Sums, WindowState
from processors.outlook import level_outlook
from processors.plugin import DomainProcessor, Observation, Output, Point, hour_start, indicator, local_day, local_year
from schemas.batch import ReadingBatch
from schemas.sites import expected_sites, load_registry
from schemas.thresholds import PlanThresholds, load_plan


def occupancy(capacity: np.ndarray, occupied: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Occupied share 0..1 per reading, from `occupied` or else `capacity - free` (NaN: unknown)."""
    cap = np.asarray(capacity, float)
    occ = np.where(np.isnan(occupied), cap - np.asarray(free, float), occupied)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip(np.where(cap > 0, occ / cap, np.nan), 0.0, 1.0)


def saturated(share: np.ndarray, *, at: int, plan: PlanThresholds | None = None) -> np.ndarray:
    """True where occupancy is above the saturation level (90% by default)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(share, float) > (plan or load_plan()).value("parking.saturated", at)


def networked_rate(last_seen_ns: np.ndarray, now_ns: int, heartbeat_s: float) -> float:
    """Share of registered lots (one entry each; NaN: never seen) that reported within the heartbeat."""
    seen = np.asarray(last_seen_ns, float)
    if not len(seen):
        return float("nan")
    online = (now_ns - seen) <= heartbeat_s * 1e9
    return float(np.mean(online & ~np.isnan(seen)))


def spaces_added(current_capacity: np.ndarray, baseline_spaces: float | None) -> float:
    """Public spaces now networked minus the operator's baseline: progress towards the plan's +20,000.
    NaN while the baseline is not set: without it the figure would be the whole networked capacity."""
    if baseline_spaces is None:
        return float("nan")
    return float(np.nansum(current_capacity) - baseline_spaces)


def _share_and_capacity(batch: ReadingBatch) -> np.ndarray:
    """[occupied share, capacity] per reading: what the hourly windows sum."""
    capacity = batch.column("capacity")
    return np.stack([occupancy(capacity, batch.column("occupied"), batch.column("free")), capacity], axis=1)


# -- plug-in: hourly occupancy per lot, district occupancy, networked rate, spaces added ----------------

class ParkingProcessor(DomainProcessor):
    """Per lot and hour: mean and peak occupancy, saturation; district per hour: occupancy, share of
    registered lots reporting (networked management) and public spaces added."""

    domain = "parking"
    offline_target = "plan l.192: 基本实现全区经营性停车场联网管理 (every commercial lot online)"

    def new_state(self) -> WindowState:
        """Per (sensor, lot, local hour): readings, the sum, count and maximum of the occupied share and
        the largest capacity reported. A lot's hourly mean and peak occupancy (saturation) follow from
        them, the district's occupancy weighs each lot's hourly mean by its capacity, and the networked
        rate needs only which lots reported in the hour: no reading is needed again."""
        return WindowState(self.domain, self.horizon_days, hours=Sums(hour_start, _share_and_capacity))

    def windows(self, state: WindowState, days: np.ndarray) -> Output:
        out = Output()
        hours = state.hours.site_windows(days)
        if not hours.pairs:
            return out
        n, mean = hours.readings, hours.sums[:, 0] / np.maximum(hours.counts[:, 0], 1)
        peak, lot_cap = hours.maxima[:, 0], np.maximum(hours.maxima[:, 1], 0.0)
        for i, (site, hour) in enumerate(hours.pairs):
            level = self.plan.value("parking.saturated", hour)
            sat = bool(peak[i] > level)
            out.points.append(Point("parking_hourly", {"site": site}, {
                "occupancy": round(float(mean[i]), 4), "occupancy_max": round(float(peak[i]), 4),
                "saturated": int(sat), "capacity": float(lot_cap[i]), "reports": int(n[i])}, hour))
            out.observations.append(Observation(
                "parking.saturated", site, "parking", site, "minor", float(peak[i]), level, sat, hour,
                f"Parking lot {site} saturated", f"{site} 停车场饱和", "practice: above 90% a lot is saturated"))
        return out

    def district(self, days: np.ndarray, fresh: Sequence[Point] = ()) -> Output:
        """Per hour: the district's occupancy (lots' hourly means weighed by capacity), the networked rate
        (lots reporting / registered lots) and the spaces added, from every lot's hourly results."""
        out = Output()
        first, last = int(days.min()), int(days.max())
        lots_of = self.site_points("parking_hourly", ["occupancy", "capacity"], first, last + 1, fresh)
        # registered lots: the registry's and every lot with results in the 30 days up to the last day
        known = set(self.history.latest("parking_hourly", ["capacity"], last - 30, last + 1)["capacity"].tags["site"])
        registered = sorted(set(expected_sites("parking")) | known | {site for site, _ in lots_of})
        per_hour: dict[int, list[tuple[str, float, float]]] = {}
        for (site, hour), f in sorted(lots_of.items()):
            if "occupancy" in f and "capacity" in f and local_day(np.array([hour]))[0] in days:
                per_hour.setdefault(hour, []).append((site, f["occupancy"], f["capacity"]))
        for hour, lots in sorted(per_hour.items()):
            total_cap = sum(c for _, _, c in lots)
            occupied = sum(m * c for _, m, c in lots)
            out.points.append(indicator("parking", "occupancy", "district", occupied / total_cap if total_cap else float("nan"),
                                        hour, source="SFpark/Shoup bands", lots=len(lots)))
            out.points.append(indicator("parking", "networked_rate", "district", len(lots) / len(registered), hour,
                                        target=self.plan.value("plan.parking.networked_share", hour), source="plan l.192",
                                        online=len(lots), registered=len(registered)))
        if per_hour:
            self._spaces_added(out, per_hour, load_registry().parking.baseline_public_spaces)
        return out

    def _spaces_added(self, out: Output, per_hour: dict[int, list[tuple[str, float, float]]],
                      baseline: int | None) -> None:
        """Public spaces added per hour against the plan's +20,000, with the year-end outlook of the latest
        hour; while the operator has not set the baseline, 'baseline not set' (baseline_set=0, no value)."""
        last_hour = max(per_hour)
        for hour, lots in sorted(per_hour.items()):
            networked = float(sum(c for _, _, c in lots))
            target = self.plan.value("plan.parking.new_public_spaces", hour)
            extra: dict[str, float | int] = {"networked_spaces": networked, "baseline_set": int(baseline is not None)}
            added = spaces_added(np.array([networked]), baseline)
            if hour == last_hour and baseline is not None:
                extra.update(self._outlook(hour, added, target))
            out.points.append(indicator("parking", "spaces_added", "district", added, hour, target=target,
                                        source="plan l.163; baseline: operator registry", **extra))

    def _outlook(self, hour: int, added: float, target: float) -> dict[str, float | int]:
        """Year-end projection of spaces added (trend of the daily latest values) and spaces per day needed."""
        today = int(local_day(np.array([hour]))[0])
        first, days_in_year = local_year(today)
        past = self.history.daily("indicator", "value", first, today,
                                  tags={"domain": "parking", "indicator": "spaces_added"})
        latest: dict[int, float] = {int(d): float(v) for d, v in zip(past.days, past.values)}  # time-ordered: last wins
        latest[today] = added
        x = np.array(sorted(latest)) - first
        o = level_outlook(x, np.array([latest[d + first] for d in x]), days_in_year, target)
        return {"projection": o.projection, "required_rest": o.required_rest, "remaining_days": o.remaining_days,
                "feasible": int(o.feasible)}


PROCESSOR = ParkingProcessor
