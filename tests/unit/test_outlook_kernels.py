"""'Will we make it?': the outlook kernels against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from processors.outlook import level_outlook, ratio_outlook, seasonal_profile


def test_pm25_mean_needed_over_the_remaining_days_is_the_hand_computed_value() -> None:
    # 330 valid days averaging 35.5 with 35 days left: (35 * 365 - 35.5 * 330) / 35 = 1060 / 35
    o = ratio_outlook(np.full(330, 35.5), np.ones(330), np.ones(35), 35.0, lower_is_better=True)
    assert o.current == pytest.approx(35.5) and o.projection == pytest.approx(35.5)
    assert o.required_rest == pytest.approx(1060 / 35) and o.remaining_days == 35
    assert o.feasible and not o.seasonal


def test_a_target_out_of_reach_is_infeasible_in_both_directions() -> None:
    # 360 days at 40: the last 5 days would need (35 * 365 - 40 * 360) / 5 = -325 µg/m³
    hopeless = ratio_outlook(np.full(360, 40.0), np.ones(360), np.ones(5), 35.0, lower_is_better=True)
    assert hopeless.required_rest == pytest.approx(-325) and not hopeless.feasible
    # a share that has already had a bad day cannot end at 100%: required 1.0 + 0.5/2 > 1
    share = ratio_outlook(np.array([1.0, 0.5]), np.ones(2), np.ones(2), 1.0, bounds=(0.0, 1.0))
    assert share.required_rest == pytest.approx(1.25) and not share.feasible


def test_the_season_still_to_come_shapes_the_projection() -> None:
    # observed level 10 in a season at 1.0; the two remaining days are at 1.5 of the year's level
    o = ratio_outlook(np.array([10.0, 10.0]), np.ones(2), np.ones(2), 12.0, lower_is_better=True,
                      profile_observed=np.ones(2), profile_rest=np.full(2, 1.5))
    assert o.projection == pytest.approx((20 + 10 * 3.0) / 4) and o.seasonal
    assert o.required_rest == pytest.approx((12 * 4 - 20) / 2)  # the required mean does not depend on the season


def test_a_rate_is_a_ratio_of_sums_not_a_mean_of_daily_rates() -> None:
    # day 1: 30 of 100 kg recycled, day 2: 40 of 50 kg -> 70 / 150; 100 kg expected on each of 3 days left
    o = ratio_outlook(np.array([30.0, 40.0]), np.array([100.0, 50.0]), np.full(3, 100.0), 0.35, bounds=(0.0, 1.0))
    assert o.current == pytest.approx(70 / 150) and o.projection == pytest.approx(70 / 150)
    assert o.required_rest == pytest.approx((0.35 * 450 - 70) / 300) and o.feasible


def test_missing_days_are_skipped_and_nothing_observed_gives_no_numbers() -> None:
    o = ratio_outlook(np.array([30.0, np.nan]), np.array([1.0, 1.0]), np.ones(1), 35.0, lower_is_better=True)
    assert o.current == 30.0 and o.required_rest == pytest.approx(35 * 2 - 30)
    empty = ratio_outlook(np.array([]), np.array([]), np.ones(10), 35.0, lower_is_better=True)
    assert np.isnan(empty.current) and np.isnan(empty.projection) and np.isnan(empty.required_rest)


def test_at_the_end_of_the_period_feasible_means_met() -> None:
    met = ratio_outlook(np.array([30.0]), np.ones(1), np.array([]), 35.0, lower_is_better=True)
    missed = ratio_outlook(np.array([36.0]), np.ones(1), np.array([]), 35.0, lower_is_better=True)
    assert met.feasible and not missed.feasible and np.isnan(met.required_rest) and met.remaining_days == 0


def test_seasonal_profile_is_the_day_of_year_mean_relative_to_the_year() -> None:
    # no smoothing: day 0 -> 2, day 1 -> 4, other days filled with the mean of known days (3); / mean 3
    p = seasonal_profile(np.array([0, 1, 1]), np.array([2.0, 3.0, 5.0]), smooth_days=1)
    assert p[0] == pytest.approx(2 / 3) and p[1] == pytest.approx(4 / 3) and p[200] == pytest.approx(1.0)
    assert p.mean() == pytest.approx(1.0) and len(p) == 366


def test_seasonal_profile_of_a_winter_heavy_history_is_high_in_winter() -> None:
    doy = np.tile(np.arange(365), 3)
    values = 30 + 15 * np.cos(2 * np.pi * doy / 365)  # three years, peak on 1 January
    p = seasonal_profile(doy, values)
    assert p[0] > 1.4 and p[182] < 0.6 and p.mean() == pytest.approx(1.0)


def test_seasonal_profile_without_history_is_flat() -> None:
    assert (seasonal_profile(np.array([], int), np.array([])) == 1).all()
    assert (seasonal_profile(np.array([5]), np.array([np.nan])) == 1).all()


def test_level_outlook_carries_the_trend_and_says_the_pace_needed() -> None:
    o = level_outlook(np.arange(10), 100.0 * np.arange(10), 20, 2000)
    assert o.current == 900 and o.projection == pytest.approx(1900) and o.remaining_days == 10
    assert o.required_rest == pytest.approx(110) and o.feasible


def test_level_outlook_already_met_and_nothing_known() -> None:
    assert level_outlook(np.array([0, 1]), np.array([2100.0, 2100.0]), 2, 2000).required_rest == 0.0
    assert np.isnan(level_outlook(np.array([0]), np.array([np.nan]), 10, 5).current)


def test_a_seasonal_projection_stays_inside_the_bounds_of_a_share() -> None:
    o = ratio_outlook(np.array([0.9]), np.ones(1), np.ones(3), 1.0, bounds=(0.0, 1.0),
                      profile_observed=np.array([0.5]), profile_rest=np.full(3, 2.0))
    assert o.projection == 1.0 and o.required_rest == pytest.approx((4 - 0.9) / 3) and not o.feasible
