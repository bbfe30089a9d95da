"""Surface water: GB 3838-2002 classes hand-computed from Table 1, a simulated year's statistics, and the
plug-in's plan l.269 indicators on a hand-built day."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.plugin import day_start
from processors.surfacewater import (
    FACTORS,
    SurfacewaterProcessor,
    factor_class,
    factor_classes,
    meets_designated,
    water_class,
)
from schemas import domain
from schemas.batch import ReadingBatch
from schemas.surfacewater import designated_classes, designated_key
from schemas.thresholds import PlanThresholds, Threshold, load_plan
from schemas.timeparse import parse_ts
from simulators.base import Sensors
from simulators.surfacewater import SurfacewaterModel
from tests.unit.fakes import MemoryHistory

AT = dt.date(2026, 6, 1)  # a local day the GB 3838-2002 entries are in force
NAN = np.nan
V6 = 6  # 劣Ⅴ


@pytest.mark.parametrize("factor, value, cls", [
    ("ph", 6.0, 1), ("ph", 9.0, 1), ("ph", 5.99, V6), ("ph", 9.01, V6), ("ph", 4.0, V6),
    ("dissolved_oxygen", 7.5, 1), ("dissolved_oxygen", 7.49, 2), ("dissolved_oxygen", 6.0, 2),
    ("dissolved_oxygen", 5.99, 3), ("dissolved_oxygen", 5.0, 3), ("dissolved_oxygen", 4.99, 4),
    ("dissolved_oxygen", 3.0, 4), ("dissolved_oxygen", 2.99, 5), ("dissolved_oxygen", 2.0, 5),
    ("dissolved_oxygen", 1.99, V6),
    ("permanganate_index", 2, 1), ("permanganate_index", 2.01, 2), ("permanganate_index", 4, 2),
    ("permanganate_index", 6, 3), ("permanganate_index", 10, 4), ("permanganate_index", 15, 5),
    ("permanganate_index", 15.1, V6),
    ("cod", 15, 1), ("cod", 15.1, 3), ("cod", 20, 3), ("cod", 30, 4), ("cod", 40, 5), ("cod", 40.5, V6),
    ("bod5", 3, 1), ("bod5", 3.5, 3), ("bod5", 6, 4), ("bod5", 10, 5), ("bod5", 10.1, V6),
    ("ammonia_nitrogen", 0.15, 1), ("ammonia_nitrogen", 0.16, 2), ("ammonia_nitrogen", 0.5, 2),
    ("ammonia_nitrogen", 1.0, 3), ("ammonia_nitrogen", 1.5, 4), ("ammonia_nitrogen", 2.0, 5),
    ("ammonia_nitrogen", 2.01, V6),
])
def test_gb3838_factor_classes_from_table_1(factor: str, value: float, cls: int) -> None:
    assert factor_class(factor, np.array([value]), at=AT)[0] == cls
    assert factor_class(factor, np.array([value]), True, at=AT)[0] == cls  # the same for lakes and reservoirs


@pytest.mark.parametrize("value, river, lake", [
    (0.01, 1, 1), (0.02, 1, 2), (0.025, 2, 2), (0.03, 2, 3), (0.05, 2, 3), (0.1, 2, 4), (0.15, 3, 5),
    (0.2, 3, 5), (0.3, 4, V6), (0.4, 5, V6), (0.41, V6, V6),
])
def test_total_phosphorus_is_stricter_for_lakes_and_reservoirs(value: float, river: int, lake: int) -> None:
    got = factor_class("total_phosphorus", np.array([value, value]), np.array([False, True]), at=AT)
    assert got.tolist() == [river, lake]


def test_total_nitrogen_classes_lakes_and_reservoirs_only() -> None:
    values = np.array([0.2, 0.5, 1.0, 1.5, 2.0, 2.1])
    assert factor_class("total_nitrogen", values, True, at=AT).tolist() == [1, 2, 3, 4, 5, V6]
    assert np.isnan(factor_class("total_nitrogen", values, False, at=AT)).all()


def test_a_missing_value_has_no_class_and_an_unknown_factor_is_refused() -> None:
    assert np.isnan(factor_class("cod", np.array([NAN]), at=AT)[0])
    with pytest.raises(ValueError, match="not a GB 3838 class factor.*permanganate_index"):
        factor_class("water_temperature", np.array([20.0]), at=AT)


def sample(**values: float) -> dict[str, np.ndarray]:
    """One sample per waterbody (river, reservoir) with the same values."""
    return {k: np.array([v, v]) for k, v in values.items()}


LAKE = np.array([False, True])


def test_the_worst_factor_decides_and_tp_makes_the_reservoir_one_class_worse() -> None:
    s = sample(ph=7.5, dissolved_oxygen=8.0, permanganate_index=3.0, cod=12, bod5=2, ammonia_nitrogen=0.4,
               total_phosphorus=0.03, total_nitrogen=0.4)
    classes, limiting = water_class(factor_classes(s, LAKE, at=AT))
    assert classes.tolist() == [2, 3]
    assert FACTORS[limiting[0]] == "permanganate_index" and FACTORS[limiting[1]] == "total_phosphorus"


def test_total_nitrogen_decides_a_reservoir_but_not_a_river() -> None:
    s = sample(ph=7.5, dissolved_oxygen=8.0, permanganate_index=1.5, ammonia_nitrogen=0.1, total_phosphorus=0.005,
               total_nitrogen=1.2)
    classes, limiting = water_class(factor_classes(s, LAKE, at=AT))
    assert classes.tolist() == [1, 4] and FACTORS[limiting[1]] == "total_nitrogen"


@pytest.mark.parametrize("values, expected", [
    ({"ammonia_nitrogen": 2.5, "dissolved_oxygen": 8.0}, V6),   # one factor past class V: 劣Ⅴ
    ({"ph": 5.5, "cod": 10.0}, V6),                            # pH outside 6-9 meets no class
    ({"ph": 9.5}, V6),
    ({"dissolved_oxygen": 1.0, "cod": 10.0}, V6),
    ({"dissolved_oxygen": 2.0, "cod": 10.0}, 5),               # DO limits are "at least": 2.0 is class V
])
def test_worse_than_class_v(values: dict, expected: int) -> None:
    classes, _ = water_class(factor_classes(sample(**values), LAKE, at=AT))
    assert classes.tolist() == [expected, expected]


@given(st.lists(st.tuples(*[st.floats(0, 20)] * 8, st.booleans()), min_size=1, max_size=20))
def test_the_class_is_never_better_than_any_factor_and_stays_in_1_to_6(rows: list) -> None:
    a = np.array([r[:8] for r in rows])
    lake = np.array([r[8] for r in rows])
    per_factor = factor_classes({f: a[:, j] for j, f in enumerate(FACTORS)}, lake, at=AT)
    overall, limiting = water_class(per_factor)
    assert ((overall >= 1) & (overall <= 6)).all()
    assert (overall >= np.nan_to_num(per_factor, nan=0)).all()
    assert (per_factor[limiting, np.arange(len(rows))] == overall).all()


def test_a_sample_without_a_class_factor_has_no_class() -> None:
    classes, limiting = water_class(factor_classes({"water_temperature": np.array([20.0])}, at=AT))
    assert np.isnan(classes[0]) and limiting[0] == -1


def test_meeting_the_designated_class() -> None:
    got = meets_designated(np.array([2, 3, 6, NAN, 2]), np.array([2, 2, 4, 3, NAN]))
    assert got[:3].tolist() == [1, 0, 0] and np.isnan(got[3:]).all()


def test_designated_classes_come_from_the_plan_and_unknown_sites_have_none() -> None:
    got = designated_classes(["laoshan-reservoir", "zhangcun-river", "nowhere"], load_plan(), AT)
    assert got[:2].tolist() == [2, 4] and np.isnan(got[2])
    assert designated_key("laoshan-reservoir") == "surfacewater.designated_class.laoshan_reservoir"


# -- the simulator: a year of hourly readings -------------------------------------------------------------

@pytest.fixture(scope="module")
def simulated_year() -> tuple[np.ndarray, np.ndarray, SurfacewaterModel]:
    """(daily means [day, sensor, field], daily class [day, sensor], model) of 2026, one sensor per site."""
    model = SurfacewaterModel(Sensors.place("surfacewater", 6), np.random.default_rng(3))
    start, hour = parse_ts("2026-01-01T00:00:00+08:00"), 3600 * 10**9
    rows = np.array([model.step(start + h * hour, 3600.0) for h in range(365 * 24)])
    daily = rows.reshape(365, 24, model.n, -1).mean(axis=1)
    columns = {f: daily[:, :, j].ravel() for j, f in enumerate(model.fields)}
    classes, _ = water_class(factor_classes(columns, np.tile(model.lake, 365), at=AT))
    return daily, classes.reshape(365, model.n), model


def test_sensors_stand_at_the_reservoir_and_the_river_sections(simulated_year) -> None:  # noqa: ANN001
    _, _, model = simulated_year
    assert set(model.sensors.kind) == {"reservoir", "river"}
    assert model.sensors.site[model.lake].tolist() == ["laoshan-reservoir"]


def test_the_reservoir_stays_in_class_ii_most_of_the_time(simulated_year) -> None:  # noqa: ANN001
    _, classes, model = simulated_year
    reservoir = classes[:, model.lake]
    assert (reservoir <= 2).mean() >= 0.95 and (reservoir == 2).mean() >= 0.8


def test_rivers_miss_their_designated_class_more_in_the_rainy_season(simulated_year) -> None:  # noqa: ANN001
    daily, classes, model = simulated_year
    rivers = ~model.lake
    meets = classes[:, rivers] <= designated_classes(model.sensors.site[rivers], load_plan(), AT)
    rainy = np.zeros(365, bool)
    rainy[181:243] = True  # July-August
    assert meets[rainy].mean() < meets[~rainy].mean() - 0.03
    assert meets.mean() > 0.8  # mostly up to standard
    nh3 = daily[:, rivers, model.fields.index("ammonia_nitrogen")]
    tp = daily[:, rivers, model.fields.index("total_phosphorus")]
    assert np.median(nh3[rainy]) > np.median(nh3[~rainy]) and np.median(tp[rainy]) > np.median(tp[~rainy])


def test_occasional_episodes_put_a_river_worse_than_class_v(simulated_year) -> None:  # noqa: ANN001
    _, classes, model = simulated_year
    river_days = classes[:, ~model.lake]
    assert 1 <= (river_days == V6).sum() <= 0.05 * river_days.size


def test_summer_warmth_lowers_dissolved_oxygen(simulated_year) -> None:  # noqa: ANN001
    daily, _, model = simulated_year
    do, temp = (daily[:, :, model.fields.index(f)] for f in ("dissolved_oxygen", "water_temperature"))
    assert (temp[212:243].mean(axis=0) > temp[:31].mean(axis=0) + 12).all()       # August vs January
    assert (do[212:243].mean(axis=0) < do[:31].mean(axis=0) - 2.5).all()


def test_every_simulated_value_is_inside_the_schema_bounds(simulated_year) -> None:  # noqa: ANN001
    daily, _, _ = simulated_year
    lo, hi = domain("surfacewater").bounds()
    assert ((daily >= lo) & (daily <= hi)).all()


# -- the plug-in on a hand-built day ---------------------------------------------------------------------

DAY = 20_600  # local day number (2026-05-27)
FIELDS = domain("surfacewater").fields


def batch(rows: list[tuple[str, int, dict[str, float]]], day: int = DAY) -> ReadingBatch:
    """Readings (site, seconds after local midnight of `day`, values) as a batch."""
    values = np.full((len(rows), len(FIELDS)), NAN)
    for i, (_, _, vals) in enumerate(rows):
        for k, v in vals.items():
            values[i, FIELDS.index(k)] = v
    n = len(rows)
    ts = np.array([int(day_start(day)) + s * 10**9 for _, s, _ in rows], np.int64)
    sites = np.array([site for site, _, _ in rows], object)
    return ReadingBatch("surfacewater", np.char.add(sites.astype(str), "-001").astype(object), sites, ts, values,
                        np.full(n, -1, np.int64), np.full(n, NAN), np.full(n, NAN), np.full(n, "native", object), ts)


CLEAN = dict(ph=7.5, dissolved_oxygen=8.0, permanganate_index=1.5, cod=10.0, bod5=2.0, ammonia_nitrogen=0.1,
             total_phosphorus=0.005, total_nitrogen=0.15, water_temperature=18.0)
HAND_BUILT = [
    ("laoshan-reservoir", 3600, {**CLEAN, "total_phosphorus": 0.02}),   # mean TP 0.03: lake class III
    ("laoshan-reservoir", 7200, {**CLEAN, "total_phosphorus": 0.04}),
    ("zhangcun-river", 3600, {**CLEAN, "ammonia_nitrogen": 1.2, "total_phosphorus": 0.25}),  # IV, designated IV
    ("zhangcun-river", 7200, {**CLEAN, "ammonia_nitrogen": 1.6, "total_phosphorus": 0.25}),
    ("xiaowang-river", 3600, {**CLEAN, "ammonia_nitrogen": 2.4}),       # mean NH3-N 2.6: 劣Ⅴ, designated III
    ("xiaowang-river", 7200, {**CLEAN, "ammonia_nitrogen": 2.8}),
    ("new-pond", 3600, {"dissolved_oxygen": 6.5}),                        # not in the registry: class II, no target
    ("zhangcun-river", -3600, {**CLEAN, "ammonia_nitrogen": 9.0}),       # the day before: not recomputed
]


def run(plan: PlanThresholds | None = None):  # noqa: ANN201
    plugin = SurfacewaterProcessor(plan or load_plan(), MemoryHistory())
    return plugin.compute(batch(HAND_BUILT), np.array([DAY]))


def test_the_plugin_classes_each_site_on_its_daily_means() -> None:
    out = run()
    daily = {p.tags["site"]: p for p in out.points if p.measurement == "surfacewater_daily"}
    assert set(daily) == {"laoshan-reservoir", "zhangcun-river", "xiaowang-river", "new-pond"}
    res, zc, xw, pond = (daily[s] for s in ("laoshan-reservoir", "zhangcun-river", "xiaowang-river", "new-pond"))
    assert res.tags["waterbody"] == "reservoir" and pond.tags["waterbody"] == "river"
    assert res.fields["total_phosphorus"] == pytest.approx(0.03) and zc.fields["ammonia_nitrogen"] == pytest.approx(1.4)
    assert (res.fields["water_class"], res.fields["designated_class"], res.fields["meets_designated"]) == (3, 2, 0)
    assert res.fields["limiting_factor"] == "total_phosphorus"
    assert (zc.fields["water_class"], zc.fields["meets_designated"]) == (4, 1)
    assert (xw.fields["water_class"], xw.fields["meets_designated"]) == (V6, 0)
    assert pond.fields["water_class"] == 2 and "designated_class" not in pond.fields
    assert {p.ts for p in out.points} == {int(day_start(DAY))}


def test_the_plugin_computes_the_plan_l269_indicators() -> None:
    ind = {p.tags["indicator"]: p.fields for p in run().points if p.measurement == "indicator"}
    assert ind["reservoir_at_designated"] == {"value": 0.0, "target": 1.0, "sites": 1}
    assert ind["sections_up_to_standard"] == {"value": 0.5, "target": 1.0, "sites": 2}  # the pond is no section
    assert ind["worse_than_v"] == {"value": 1.0, "target": 0.0, "sites": 4}


def test_the_plugin_observes_designated_class_misses_and_worse_than_v() -> None:
    obs = {(o.rule, o.entity): o for o in run().observations}
    miss = obs[("surfacewater.designated_class", "laoshan-reservoir")]
    assert miss.breach is True and miss.severity == "major" and (miss.value, miss.threshold) == (3, 2.0)
    assert obs[("surfacewater.designated_class", "zhangcun-river")].breach is False
    v6 = obs[("surfacewater.worse_than_v", "xiaowang-river")]
    assert v6.breach is True and v6.severity == "critical"
    assert obs[("surfacewater.designated_class", "xiaowang-river")].severity == "critical"
    assert ("surfacewater.designated_class", "new-pond") not in obs
    assert obs[("surfacewater.worse_than_v", "new-pond")].breach is False
    assert all(isinstance(o.breach, bool) for o in obs.values())   # JSON-serialisable for alerts.events


def test_an_operator_override_of_a_designated_class_changes_the_verdict() -> None:
    stricter = PlanThresholds(version="test", threshold=[Threshold(
        key=designated_key("zhangcun-river"), value=3, unit="class", source="test override",
        **{"from": dt.date(2021, 1, 1)})])
    obs = {(o.rule, o.entity): o for o in run(load_plan().merged(stricter)).observations}
    assert obs[("surfacewater.designated_class", "zhangcun-river")].breach is True


def local_day_of(date: dt.date) -> int:
    return (date - dt.date(1970, 1, 1)).days


def test_a_day_before_gb3838_is_logged_and_skipped_not_a_crash(caplog) -> None:  # noqa: ANN001
    day = local_day_of(dt.date(2001, 5, 1))  # a device clock set wrong (an archive an operator let in: ingest.earliest_ts)
    plugin = SurfacewaterProcessor(load_plan(), MemoryHistory())
    out = plugin.compute(batch(HAND_BUILT[:2], day), np.array([day]))
    assert out.points == [] and out.observations == []
    assert "day_not_judged" in caplog.text and "gb3838" in caplog.text


def test_a_day_before_the_plan_is_classed_without_targets() -> None:
    day = local_day_of(dt.date(2020, 6, 1))
    plugin = SurfacewaterProcessor(load_plan(), MemoryHistory())
    out = plugin.compute(batch(HAND_BUILT[:6], day), np.array([day]))
    daily = [p for p in out.points if p.measurement == "surfacewater_daily"]
    assert len(daily) == 3 and all("designated_class" not in p.fields for p in daily)
    ind = {p.tags["indicator"]: p.fields for p in out.points if p.measurement == "indicator"}
    assert set(ind) == {"worse_than_v"} and ind["worse_than_v"]["target"] is None and ind["worse_than_v"]["value"] == 1.0


def test_hostile_site_names_and_extreme_values_give_valid_line_protocol() -> None:
    rows = [("pond, x=1", 60, {"dissolved_oxygen": 0.0, "ph": 14.0, "cod": 500.0})]
    out = SurfacewaterProcessor(load_plan(), MemoryHistory()).compute(batch(rows), np.array([DAY]))
    line = next(p.line() for p in out.points if p.measurement == "surfacewater_daily")
    assert line.startswith("surfacewater_daily,site=pond\\,\\ x\\=1,waterbody=river ") and "water_class=6i" in line
