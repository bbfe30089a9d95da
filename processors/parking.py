"""Parking: occupancy per lot, saturation, the networked-management rate and spaces added.

The plan asks for every commercial lot networked (l.192) and 20,000 new public spaces (l.163).
A lot is networked while it reports within its heartbeat window.
"""
from __future__ import annotations

import numpy as np

from processors.outlook import level_outlook
from processors.plugin import (
    DomainProcessor,
    Observation,
    Output,
    Point,
    hour_start,
    indicator,
    local_day,
    local_year,
    site_groups,
)
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


# -- plug-in: hourly occupancy per lot, district occupancy, networked rate, spaces added ----------------

class ParkingProcessor(DomainProcessor):
    """Per lot and hour: mean and peak occupancy, saturation; district per hour: occupancy, share of
    registered lots reporting (networked management) and public spaces added."""

    domain = "parking"
    offline_target = "plan l.192: 基本实现全区经营性停车场联网管理 (every commercial lot online)"

    def compute(self, buffer, days: np.ndarray) -> Output:  # noqa: ANN001
        out = Output()
        col = buffer.fields.index
        share = occupancy(buffer.values[:, col("capacity")], buffer.values[:, col("occupied")],
                          buffer.values[:, col("free")])
        capacity = buffer.values[:, col("capacity")]
        # registered lots: every lot known to the buffer or to the results of the 30 days up to the batch's
        last = int(days.max())
        known = set(self.history.latest("parking_hourly", ["capacity"], last - 30, last + 1)["capacity"].tags["site"])
        registered = sorted(set(expected_sites("parking")) | known | set(buffer.site.astype(str)))
        hours = hour_start(buffer.ts)
        sel = np.isin(local_day(buffer.ts), days)
        uniq, inverse = site_groups(buffer.site[sel], hours[sel])
        s, cap = share[sel], capacity[sel]
        n = np.bincount(inverse, minlength=len(uniq))
        ok = ~np.isnan(s)
        mean = np.bincount(inverse, np.where(ok, s, 0), len(uniq)) / np.maximum(np.bincount(inverse, ok, len(uniq)), 1)
        peak = np.full(len(uniq), -np.inf)
        np.maximum.at(peak, inverse, np.where(ok, s, -np.inf))
        lot_cap = np.zeros(len(uniq))
        np.maximum.at(lot_cap, inverse, np.nan_to_num(cap))
        per_hour: dict[int, list[tuple[str, float, float]]] = {}
        for i, (site, hour) in enumerate(uniq):
            level = self.plan.value("parking.saturated", hour)
            sat = bool(peak[i] > level)
            out.points.append(Point("parking_hourly", {"site": site}, {
                "occupancy": round(float(mean[i]), 4), "occupancy_max": round(float(peak[i]), 4),
                "saturated": int(sat), "capacity": float(lot_cap[i]), "reports": int(n[i])}, hour))
            out.observations.append(Observation(
                "parking.saturated", site, "parking", site, "minor", float(peak[i]), level, sat, hour,
                f"Parking lot {site} saturated", f"{site} 停车场饱和", "practice: above 90% a lot is saturated"))
            per_hour.setdefault(hour, []).append((site, float(mean[i]), float(lot_cap[i])))
        facts = load_registry().parking
        for hour, lots in sorted(per_hour.items()):
            total_cap = sum(c for _, _, c in lots)
            occupied = sum(m * c for _, m, c in lots)
            out.points.append(indicator("parking", "occupancy", "district", occupied / total_cap if total_cap else float("nan"),
                                        hour, source="SFpark/Shoup bands", lots=len(lots)))
            out.points.append(indicator("parking", "networked_rate", "district", len(lots) / len(registered), hour,
                                        target=self.plan.value("plan.parking.networked_share", hour), source="plan l.192",
                                        online=len(lots), registered=len(registered)))
        if per_hour:
            self._spaces_added(out, per_hour, facts.baseline_public_spaces)
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
