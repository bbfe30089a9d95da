""""Will we make it?": year-end projection of a cumulative plan indicator and what the rest of the
period must deliver to meet its target. Pure NumPy (no I/O), so every case is unit-tested by hand.

Two shapes of indicator:
- a ratio of sums over the period (PM2.5 annual mean = sum of valid daily means / valid days;
  recycling rate = recycled kg / generated kg; class I-II share = good site-days / site-days):
  `ratio_outlook`. The remaining days are expected to continue the observed level, shaped by the
  seasonal profile of past years where history exists (a winter-heavy PM2.5 year is projected with
  its winter still to come);
- a stock that must reach a level (public spaces added): `level_outlook`, the linear trend of the
  period so far carried to its end.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

SMOOTH_DAYS = 31  # the seasonal profile is a centred 31-day circular mean of past years' day-of-year means


class Outlook(NamedTuple):
    """Where an indicator stands, where it is heading and what the rest of the period must deliver."""

    current: float         # value of the period so far (NaN: nothing observed)
    projection: float      # expected value at the end of the period
    required_rest: float   # the ratio (or per-day increase) the remaining days must deliver for the target
    remaining_days: int
    feasible: bool         # whether required_rest is physically possible (inside [lo, hi] of the indicator)
    seasonal: bool         # whether a seasonal profile from past years shaped the projection


def seasonal_profile(day_of_year: np.ndarray, values: np.ndarray, *, smooth_days: int = SMOOTH_DAYS) -> np.ndarray:
    """Relative level per day of year (366 entries, index 0 = 1 January, mean 1) from past years'
    daily values: the day-of-year means, smoothed circularly over `smooth_days`, divided by their
    mean. Days without history take the smoothed neighbours; with no usable history, all ones."""
    doy = np.asarray(day_of_year, int)
    v = np.asarray(values, float)
    ok = ~np.isnan(v) & (doy >= 0) & (doy < 366)
    sums = np.bincount(doy[ok], v[ok], minlength=366)
    counts = np.bincount(doy[ok], minlength=366).astype(float)
    if not counts.any() or sums.sum() <= 0:
        return np.ones(366)
    kernel = np.ones(smooth_days)
    wrap = smooth_days // 2
    circ = lambda a: np.convolve(np.concatenate([a[len(a) - wrap:], a, a[:wrap]]), kernel, "valid")  # noqa: E731
    s, c = circ(sums), circ(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = np.where(c > 0, s / c, np.nan)
    if np.isnan(smooth).any():  # a gap wider than the window: fill with the overall mean
        smooth = np.where(np.isnan(smooth), np.nanmean(smooth), smooth)
    return smooth / smooth.mean()


def ratio_outlook(numerator: np.ndarray, denominator: np.ndarray, remaining_denominator: np.ndarray, target: float,
                  *, profile_observed: np.ndarray | None = None, profile_rest: np.ndarray | None = None,
                  lower_is_better: bool = False, bounds: tuple[float, float] = (0.0, np.inf)) -> Outlook:
    """Outlook of sum(numerator) / sum(denominator) at the end of the period.

    numerator, denominator: per observed day (NaN numerators and their days are skipped).
    remaining_denominator: the expected denominator of each remaining day (1 per day for a mean of
    daily values; the expected kg per day for a rate).
    profile_observed / profile_rest: the seasonal level of each observed / remaining day (see
    `seasonal_profile`); the observed ratio is de-seasonalised with the first and re-seasonalised with
    the second, so the rest of the year is projected with its own season.
    required_rest: the ratio over the remaining days that lands exactly on the target (a ceiling when
    `lower_is_better`, else a floor); `feasible` says whether the indicator can still get there inside
    `bounds` (e.g. a share cannot exceed 1, a concentration cannot go below 0); at the end of the
    period, whether the target is met.
    """
    num, den = np.asarray(numerator, float), np.asarray(denominator, float)
    ok = ~np.isnan(num) & ~np.isnan(den) & (den > 0)
    rest = np.asarray(remaining_denominator, float)
    seasonal = profile_observed is not None and profile_rest is not None
    p_obs = np.asarray(profile_observed, float)[ok] if seasonal else np.ones(int(ok.sum()))
    p_rest = np.asarray(profile_rest, float) if seasonal else np.ones(len(rest))
    n_sum, d_sum, r_sum = float(num[ok].sum()), float(den[ok].sum()), float(rest.sum())
    current = n_sum / d_sum if d_sum > 0 else float("nan")
    if d_sum > 0 and r_sum > 0:
        level = n_sum / float((den[ok] * p_obs).sum())  # the observed ratio with the season taken out
        projection = (n_sum + level * float((rest * p_rest).sum())) / (d_sum + r_sum)
        projection = float(np.clip(projection, *bounds))  # a share shaped by a busy season still ends <= 100%
        required = (target * (d_sum + r_sum) - n_sum) / r_sum
    else:
        projection = current
        required = float("nan")
    if np.isnan(required):
        feasible = bool(current <= target if lower_is_better else current >= target)
    else:
        feasible = bool(required >= bounds[0] if lower_is_better else required <= bounds[1])
    return Outlook(current, projection, required, len(rest), feasible, seasonal)


def level_outlook(day_index: np.ndarray, level: np.ndarray, period_days: int, target: float) -> Outlook:
    """Outlook of a stock that must reach `target` by the last day of the period (day index
    period_days - 1): projection by the least-squares trend of the observed days, and the increase per
    remaining day the target needs (<= 0: already met)."""
    x, y = np.asarray(day_index, float), np.asarray(level, float)
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    if not len(y):
        return Outlook(float("nan"), float("nan"), float("nan"), period_days, False, False)
    last = int(x.max())
    current = float(y[x == last][-1])
    remaining = max(period_days - 1 - last, 0)
    slope = float(np.polyfit(x, y, 1)[0]) if len(np.unique(x)) > 1 else 0.0
    projection = current + slope * remaining
    if remaining:
        required = (target - current) / remaining
    else:
        required = 0.0 if current >= target else float("inf")
    return Outlook(current, projection, required, remaining, bool(np.isfinite(required)), False)
