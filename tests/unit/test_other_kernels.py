"""Sea water, parking and garbage kernels: hand-computed cases from the standards and properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.garbage import full_since, overdue_bins, rates
from processors.parking import networked_rate, occupancy, saturated, spaces_added
from processors.plugin import bounded_share
from processors.water import factor_class, good_share, green_tide_level, seawater_class

AT = 1_790_000_000 * 10**9  # a UTC ns timestamp (2026-09-21), for the entry in force

NAN = np.nan


@pytest.mark.parametrize("factor, value, cls", [
    ("ph", 8.1, 1), ("ph", 7.0, 3), ("ph", 9.0, 5),
    ("dissolved_oxygen", 6.5, 1), ("dissolved_oxygen", 6.0, 2), ("dissolved_oxygen", 4.5, 3), ("dissolved_oxygen", 3.0, 5),
    ("cod", 2.0, 1), ("cod", 2.5, 2), ("cod", 5.1, 5),
    ("inorganic_nitrogen", 0.20, 1), ("inorganic_nitrogen", 0.35, 3), ("inorganic_nitrogen", 0.45, 4),
    ("phosphate", 0.015, 1), ("phosphate", 0.030, 2), ("phosphate", 0.040, 4), ("phosphate", 0.05, 5),
    ("petroleum", 0.05, 1), ("petroleum", 0.2, 3),
])
def test_gb3097_factor_classes(factor: str, value: float, cls: int) -> None:
    assert factor_class(factor, np.array([value]), at=AT)[0] == cls


def test_site_class_is_the_worst_factor() -> None:
    result = seawater_class(np.array([8.1, 8.1, NAN]), np.array([7.0, 7.0, NAN]), np.array([1.0, 1.0, NAN]),
                            np.array([0.1, 0.45, NAN]), np.array([0.01, 0.01, NAN]), np.array([0.01, NAN, NAN]), at=AT)
    assert result[0] == 1 and result[1] == 4 and np.isnan(result[2])


@settings(deadline=None)  # a loaded shared machine must not fail a property on time
@given(st.lists(st.tuples(*[st.floats(0, 10)] * 6), min_size=1, max_size=20))
def test_class_is_never_better_than_any_factor(rows: list) -> None:
    a = np.array(rows)
    overall = seawater_class(*a.T, at=AT)
    names = ("ph", "dissolved_oxygen", "cod", "inorganic_nitrogen", "phosphate", "petroleum")
    for j, name in enumerate(names):
        assert (overall >= factor_class(name, a[:, j], at=AT)).all()


def test_good_share_counts_class_1_and_2_over_sites_with_a_class() -> None:
    assert good_share(np.array([1, 2, 3, 2, NAN])) == 0.75


def test_green_tide_watch_and_warning() -> None:
    level = green_tide_level(np.array([5, 12, 15, 15]), np.array([5, 5, 20, 20]),
                             np.array([4, 10, 12, 16]), np.array([4, 4, 15, 15]), at=AT)
    assert level.tolist() == [0, 1, 2, 1]


def test_occupancy_from_occupied_or_free_and_saturation_above_90_percent() -> None:
    share = occupancy(np.array([100.0, 100, 200]), np.array([95.0, NAN, 100]), np.array([NAN, 20, NAN]))
    assert share.tolist() == [0.95, 0.8, 0.5]
    assert saturated(share, at=AT).tolist() == [True, False, False]


@settings(deadline=None)  # a loaded shared machine must not fail a property on time
@given(st.lists(st.tuples(st.floats(1, 5000), st.floats(0, 1)), min_size=1, max_size=30))
def test_occupancy_stays_within_0_and_1(lots: list) -> None:
    cap = np.array([c for c, _ in lots])
    occ = np.array([c * s for c, s in lots])
    share = occupancy(cap, occ, np.full(len(cap), NAN))
    assert ((share >= 0) & (share <= 1)).all()


def test_networked_rate_counts_lots_inside_the_heartbeat_and_never_seen_ones_as_offline() -> None:
    now = 10_000 * 10**9
    assert networked_rate(np.array([now - 100e9, now - 700e9, NAN, now]), now, 600) == 0.5


def test_spaces_added_against_the_baseline() -> None:
    assert spaces_added(np.array([800.0, 1200.0]), 500.0) == 1500.0


def test_spaces_added_without_a_baseline_is_not_a_number_not_the_whole_capacity() -> None:
    assert np.isnan(spaces_added(np.array([800.0, 1200.0]), None))


def test_garbage_rates() -> None:
    r = rates(np.array([1000.0, 0.0]), np.array([200.0, 0]), np.array([180.0, 0]), np.array([400.0, 0]),
              np.array([990.0, 0]))
    assert r.recycling[0] == pytest.approx(0.38) and r.resource_utilisation[0] == pytest.approx(0.38 + 0.12)
    assert r.harmless[0] == pytest.approx(0.99) and np.isnan(r.recycling[1])
    assert not r.inconsistent.any() and r.reason == ["", ""]


def test_garbage_rates_are_bounded_and_say_why_when_inputs_disagree() -> None:
    # more recovered than generated, and a negative harmless figure (a meter reset)
    r = rates(np.array([100.0, 100.0]), np.array([90.0, 10.0]), np.array([30.0, 0]), np.array([0.0, 0]),
              np.array([100.0, -5.0]))
    assert r.recycling.tolist() == [1.0, 0.1] and r.resource_utilisation[0] == 1.0 and r.harmless[1] == 0.0
    assert r.inconsistent.tolist() == [True, True]
    assert "recovered" in r.reason[0] and "harmlessly" in r.reason[1] and "harmlessly" not in r.reason[0]
    assert ((r.recycling >= 0) & (r.recycling <= 1)).all()


@settings(deadline=None)  # a loaded shared machine must not fail a property on time
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=30))
def test_a_bounded_share_never_leaves_0_1(pairs: list) -> None:
    num, den = np.array(pairs).T
    share, bad = bounded_share(num, den)
    ok = ~np.isnan(share)
    assert ((share[ok] >= 0) & (share[ok] <= 1)).all() and (ok == (den > 0)).all()
    assert (bad == ((den > 0) & ((num < 0) | (num > den)))).all()


def test_a_bin_full_past_its_deadline_is_overdue() -> None:
    ts = np.array([0, 10, 20, 30]) * 3600 * 10**9
    since = full_since(ts, np.array([0.5, 0.95, 0.97, 1.0]), level=0.9)
    assert since == ts[1]
    assert overdue_bins(np.array([since]), now_ns=int(ts[1] + 25 * 3600e9), at=AT).tolist() == [True]
    assert overdue_bins(np.array([since]), now_ns=int(ts[1] + 23 * 3600e9), at=AT).tolist() == [False]
    assert np.isnan(full_since(ts, np.array([0.95, 0.97, 1.0, 0.1]), level=0.9))
