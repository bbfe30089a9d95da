"""FWI system: the published Van Wagner & Pickett (1985) test table, to one decimal, and level mapping."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.fire import danger_level, fwi_daily

AT = 1_790_000_000 * 10**9  # a UTC ns timestamp (2026-09-21), for the entry in force

TABLE = np.loadtxt(Path(__file__).parents[1] / "fixtures" / "fwi_vanwagner_pickett_1985.txt", skiprows=4)
MONTH, _, TEMP, RH, WIND, RAIN = TABLE[:, :6].T
EXPECTED = dict(zip(["ffmc", "dmc", "dc", "isi", "bui", "fwi"], TABLE[:, 6:].T))


@pytest.mark.parametrize("code", ["ffmc", "dmc", "dc", "isi", "bui", "fwi"])
def test_fwi_daily_reproduces_the_published_table_to_one_decimal(code: str) -> None:
    codes = fwi_daily(TEMP, RH, WIND, RAIN, MONTH.astype(int), ffmc0=85.0, dmc0=6.0, dc0=15.0, lat=36.1)
    got = np.round(getattr(codes, code), 1)
    assert len(got) == 49
    np.testing.assert_allclose(got, EXPECTED[code], atol=0.1 + 1e-9)


def test_stations_are_computed_side_by_side() -> None:
    two = np.stack([TEMP, TEMP], axis=1)
    codes = fwi_daily(two, np.stack([RH, RH], 1), np.stack([WIND, WIND], 1), np.stack([RAIN, RAIN], 1), MONTH.astype(int))
    assert codes.fwi.shape == (49, 2) and np.allclose(codes.fwi[:, 0], codes.fwi[:, 1])


def test_codes_carry_from_one_call_to_the_next() -> None:
    whole = fwi_daily(TEMP, RH, WIND, RAIN, MONTH.astype(int))
    first = fwi_daily(TEMP[:20], RH[:20], WIND[:20], RAIN[:20], MONTH[:20].astype(int))
    rest = fwi_daily(TEMP[20:], RH[20:], WIND[20:], RAIN[20:], MONTH[20:].astype(int),
                     ffmc0=first.ffmc[-1], dmc0=first.dmc[-1], dc0=first.dc[-1])
    assert np.allclose(rest.fwi, whole.fwi[20:])


def test_danger_levels_follow_the_cut_points() -> None:
    assert danger_level(np.array([0, 4.9, 5, 9.9, 10, 19.9, 20, 29.9, 30, 80]), at=AT).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


@settings(deadline=None)  # a loaded shared machine must not fail a property on time
@given(st.floats(-10, 40), st.floats(5, 100), st.floats(0, 60), st.floats(0, 50), st.integers(1, 12))
def test_codes_stay_in_their_ranges(t: float, h: float, w: float, r: float, m: int) -> None:
    c = fwi_daily(np.array([t]), np.array([h]), np.array([w]), np.array([r]), np.array([m]))
    assert 0 <= c.ffmc[0] <= 101 and c.dmc[0] >= 0 and c.dc[0] >= 0 and c.isi[0] >= 0 and c.fwi[0] >= 0


def test_southern_latitudes_are_refused_rather_than_wrong() -> None:
    with pytest.raises(ValueError, match="latitude 20"):
        fwi_daily(TEMP, RH, WIND, RAIN, MONTH.astype(int), lat=20)
