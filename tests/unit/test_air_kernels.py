"""HJ 633-2012 IAQI/AQI and GB 3095-2012 means, with cases worked by hand from the standards' tables."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.air import ITEMS, aqi, daily_mean, hourly_aqi, iaqi, rolling_8h, year_to_date
from processors.plugin import group_means

AT = 1_790_000_000 * 10**9  # a UTC ns timestamp (2026-09-21), for the entry in force


@pytest.mark.parametrize("item, c, expected", [
    ("PM25_24H", 0, 0), ("PM25_24H", 35, 50), ("PM25_24H", 75, 100), ("PM25_24H", 500, 500),
    # (100-50)/(75-35)*(41-35)+50 = 57.5 -> rounded up 58
    ("PM25_24H", 41, 58),
    # (150-100)/(115-75)*(80-75)+100 = 106.25 -> 107
    ("PM25_24H", 80, 107),
    ("PM10_24H", 150, 100), ("PM10_24H", 420, 300),
    # CO in mg/m3: (100-50)/(4-2)*(3-2)+50 = 75
    ("CO_24H", 3, 75),
    # SO2 1h: 650 -> 150; 800 -> 200; above 800 not computable (note a)
    ("SO2_1H", 650, 150), ("SO2_1H", 800, 200),
    # O3 8h: (150-100)/(215-160)*(200-160)+100 = 136.36 -> 137; 800 -> 300
    ("O3_8H", 200, 137), ("O3_8H", 800, 300),
    ("NO2_1H", 100, 50), ("O3_1H", 160, 50),
])
def test_iaqi_hand_computed_cases(item: str, c: float, expected: float) -> None:
    assert iaqi(item, np.array([c]), at=AT)[0] == expected


@pytest.mark.parametrize("item, c", [("SO2_1H", 801), ("O3_8H", 801), ("PM25_24H", -1), ("PM25_24H", np.nan)])
def test_iaqi_not_computable_is_nan(item: str, c: float) -> None:
    assert np.isnan(iaqi(item, np.array([c]), at=AT)[0])


def test_above_a_full_table_the_iaqi_is_500() -> None:
    assert iaqi("PM25_24H", np.array([800.0]), at=AT)[0] == 500


@settings(deadline=None)  # a loaded shared machine must not fail a property on time
@given(st.sampled_from(ITEMS), st.lists(st.floats(0, 3000), min_size=2, max_size=30))
def test_iaqi_is_monotone_in_concentration(item: str, cs: list[float]) -> None:
    c = np.sort(np.array(cs))
    v = iaqi(item, c, at=AT)
    finite = v[~np.isnan(v)]
    assert (np.diff(finite) >= 0).all()


def test_aqi_takes_the_max_and_names_primary_and_exceeding_pollutants() -> None:
    result = aqi({"PM25_24H": np.array([58.0, 30, 160]), "PM10_24H": np.array([40.0, 20, 160]),
                  "O3_8H": np.array([58.0, 45, 120])})
    assert result.aqi.tolist() == [58, 45, 160]
    assert result.primary == ["PM25,O3", "", "PM25,PM10"]
    assert result.exceeding == ["", "", "PM25,PM10,O3"]
    assert result.category.tolist() == [2, 1, 4]


def test_aqi_category_edges_follow_hj633() -> None:
    values = np.array([0, 50, 51, 100, 101, 150, 151, 200, 201, 300, 301, 500], float)
    assert aqi({"PM25_24H": values}).category.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_hourly_aqi_falls_back_to_24h_so2_above_the_1h_table() -> None:
    means = {k: np.array([10.0]) for k in ("pm25", "pm10", "no2", "co", "o3")}
    means["so2"] = np.array([900.0])
    # SO2 24h: (300-200)/(1600-800)*(900-800)+200 = 212.5 -> 213
    assert hourly_aqi(means, at=AT).aqi[0] == 213


def test_group_means_ignore_missing_values() -> None:
    keys = np.array(["a", "b", "a", "a"])
    vals = np.array([[1.0, np.nan], [5.0, 2.0], [3.0, 4.0], [np.nan, 6.0]])
    uniq, means, counts = group_means(keys, vals)
    assert uniq.tolist() == ["a", "b"] and means.tolist() == [[2.0, 5.0], [5.0, 2.0]]
    assert counts.tolist() == [[2, 2], [1, 1]]


def test_daily_mean_needs_20_valid_hours() -> None:
    day = np.full((2, 24), 40.0)
    day[1, :5] = np.nan  # 19 valid hours
    result = daily_mean(day)
    assert result[0] == 40.0 and np.isnan(result[1])


def test_8h_rolling_mean_needs_6_valid_hours() -> None:
    hours = np.arange(10, dtype=float)
    hours[2] = np.nan
    r = rolling_8h(hours)
    assert np.isnan(r[:6]).all()  # hour 5 has only 5 valid values (0,1,3,4,5)
    assert r[6] == pytest.approx(np.mean([0, 1, 3, 4, 5, 6]))
    assert r[9] == pytest.approx(np.mean([3, 4, 5, 6, 7, 8, 9]))


def test_year_to_date_against_the_plan_targets() -> None:
    ytd = year_to_date(np.array([30.0, 40.0, np.nan, 50.0]), days_in_year=365, at=AT)
    assert ytd.mean == 40.0 and ytd.valid_days == 3 and ytd.target == 35.0 and ytd.stretch == 33.5
    # the annual mean is over valid days: 3 so far + 361 to come; (35 * 364 - 120) / 361
    assert ytd.required_rest == pytest.approx((35 * 364 - 120) / 361) and ytd.remaining_days == 361
    assert ytd.projection == 40.0 and ytd.feasible and not ytd.seasonal


def test_year_to_date_projects_with_the_season_still_to_come() -> None:
    profile = np.ones(366)
    profile[2:365] = 2.0  # the rest of the year runs twice as polluted as its first two days
    ytd = year_to_date(np.array([20.0, 20.0]), days_in_year=365, at=AT, profile=profile)
    assert ytd.seasonal and ytd.projection == pytest.approx((40 + 20 * 2 * 363) / 365)
