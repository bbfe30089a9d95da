"""Plug-ins judge every reading by the plan entry of its own local day, and their indicators cannot
flatter: coverage over the zones that should report, rates bounded with the reason, no made-up baseline."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from infra.lineprotocol import Point
from processors.air import AirProcessor
from processors.fire import FireProcessor, fwi_daily
from processors.garbage import GarbageProcessor
from processors.parking import ParkingProcessor
from processors.plugin import local_day, year_ends
from schemas.batch import ReadingBatch
from schemas.batch import get_domain as domain
from schemas.sites import expected_sites, load_registry
from schemas.thresholds import load_plan
from tests.unit.fakes import MemoryHistory

UTC8 = dt.timezone(dt.timedelta(hours=8))
NAN = float("nan")


def ns(*local: int) -> int:
    return int(dt.datetime(*local, tzinfo=UTC8).timestamp()) * 10**9


def batch(name: str, site: list[str], ts: list[int], rows: list[dict[str, float]]) -> ReadingBatch:
    fields = domain(name).fields
    values = np.array([[r.get(f, NAN) for f in fields] for r in rows], float)
    n = len(ts)
    return ReadingBatch(name, np.array([f"{s}-s1" for s in site], object), np.array(site, object),
                        np.array(ts, np.int64), values, np.full(n, -1, np.int64), np.full(n, NAN), np.full(n, NAN),
                        np.full(n, "native", object), np.array(ts, np.int64))


def run(processor, b: ReadingBatch):  # noqa: ANN001, ANN201
    return processor.compute(b, np.unique(local_day(b.ts)))


@pytest.fixture
def midnight_plan(tmp_path: Path):  # noqa: ANN201
    """A made-up operator change at local midnight 2026-03-01: saturation 90% -> 50%, fire alert 4 -> 2."""
    f = tmp_path / "ops.toml"
    rows = [("parking.saturated", 0.9, 0.5), ("alert.fire.level", 4, 2)]
    f.write_text('version = "ops"\n' + "".join(
        f'[[threshold]]\nkey = "{k}"\nvalue = {a}\nunit = "1"\nsource = "shipped"\nfrom = 2021-01-01\nto = 2026-02-28\n'
        f'[[threshold]]\nkey = "{k}"\nvalue = {b}\nunit = "1"\nsource = "made-up change"\nfrom = 2026-03-01\n'
        for k, a, b in rows))
    return load_plan(override=f)


def test_parking_readings_at_2359_and_0001_local_meet_different_saturation_levels(midnight_plan) -> None:  # noqa: ANN001
    p = ParkingProcessor(midnight_plan, MemoryHistory())
    ts = [ns(2026, 2, 28, 23, 59), ns(2026, 3, 1, 0, 1)]
    out = run(p, batch("parking", ["zhonghan-mall"] * 2, ts, [{"capacity": 100, "occupied": 70}] * 2))
    obs = sorted(out.observations, key=lambda o: o.ts)
    assert [(o.threshold, o.breach) for o in obs] == [(0.9, False), (0.5, True)]
    hourly = sorted((p.ts, p.fields["saturated"]) for p in out.points if p.measurement == "parking_hourly")
    assert [s for _, s in hourly] == [0, 1]


def test_fire_alert_level_of_the_local_day_travels_in_the_observation(midnight_plan) -> None:  # noqa: ANN001
    p = FireProcessor(midnight_plan, MemoryHistory())
    noon = {"temperature": 15.0, "humidity": 40.0, "wind_speed": 10.0, "rain_24h": 0.0}
    out = run(p, batch("fire", ["jufeng"] * 2, [ns(2026, 2, 28, 12, 0), ns(2026, 3, 1, 12, 0)], [noon, noon]))
    danger = sorted((o.ts, o.threshold) for o in out.observations if o.rule == "fire.danger")
    assert [t for _, t in danger] == [4, 2]


def test_a_silent_forest_zone_lowers_coverage_and_is_named() -> None:
    p = FireProcessor(load_plan(), MemoryHistory())
    noon = {"temperature": 15.0, "humidity": 40.0, "wind_speed": 10.0, "rain_24h": 0.0}
    out = run(p, batch("fire", ["jufeng", "huayan"], [ns(2026, 4, 1, 12, 0)] * 2, [noon, noon]))
    cov = next(p for p in out.points if p.measurement == "indicator" and p.tags["indicator"] == "zones_covered")
    expected = expected_sites("fire")
    assert len(expected) == 5 and cov.fields["value"] == pytest.approx(2 / 5)
    assert cov.fields["registered"] == 5 and cov.fields["missing"] == ",".join(sorted(set(expected) - {"jufeng", "huayan"}))


def test_a_zone_outside_the_registry_does_not_raise_coverage() -> None:
    p = FireProcessor(load_plan(), MemoryHistory())
    noon = {"temperature": 15.0, "humidity": 40.0, "wind_speed": 10.0, "rain_24h": 0.0}
    out = run(p, batch("fire", ["unknown-zone"], [ns(2026, 4, 1, 12, 0)], [noon]))
    cov = next(p for p in out.points if p.measurement == "indicator" and p.tags["indicator"] == "zones_covered")
    assert cov.fields["value"] == 0.0


def test_spaces_added_says_baseline_not_set_instead_of_counting_every_space() -> None:
    assert load_registry().parking.baseline_public_spaces is None  # the shipped registry does not know it
    p = ParkingProcessor(load_plan(), MemoryHistory())
    out = run(p, batch("parking", ["zhonghan-mall"], [ns(2026, 4, 1, 9, 0)], [{"capacity": 1200, "occupied": 600}]))
    added = [p for p in out.points if p.measurement == "indicator" and p.tags["indicator"] == "spaces_added"]
    assert added and all(" value=" not in p.line() and ",value=" not in p.line() for p in added)
    assert added[0].fields["baseline_set"] == 0 and added[0].fields["networked_spaces"] == 1200
    assert np.isnan(added[0].fields["value"]) and added[0].fields["target"] == 20000


def test_spaces_added_with_an_operator_baseline_and_its_outlook(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    registry = tmp_path / "sites.toml"
    registry.write_text(Path("schemas/sites.toml").read_text().replace("# baseline_public_spaces = 12000",
                                                                        "baseline_public_spaces = 1000"))
    monkeypatch.setenv("SMARTCITY_SITES", str(registry))
    load_registry.cache_clear()
    try:
        p = ParkingProcessor(load_plan(), MemoryHistory())
        out = run(p, batch("parking", ["zhonghan-mall"], [ns(2026, 12, 21, 9, 0)], [{"capacity": 1200, "occupied": 6}]))
    finally:
        load_registry.cache_clear()
    added = next(p for p in out.points if p.measurement == "indicator" and p.tags["indicator"] == "spaces_added")
    assert added.fields["value"] == 200 and added.fields["baseline_set"] == 1
    # 2026-12-21 is day 354 of 365: 10 days left, (20000 - 200) / 10 spaces a day needed
    assert added.fields["remaining_days"] == 10 and added.fields["required_rest"] == pytest.approx(1980)
    assert added.fields["feasible"] == 1 and added.fields["projection"] == 200


def test_inconsistent_garbage_report_is_clipped_flagged_and_explained() -> None:
    p = GarbageProcessor(load_plan(), MemoryHistory())
    report = {"recyclable_kg": 50, "hazardous_kg": 0, "kitchen_kg": 30, "residual_kg": 20, "harmless_kg": 100,
              "recovered_kg": 120, "kitchen_resource_kg": 10, "incinerated_kg": 0, "landfilled_kg": 0}
    out = run(p, batch("garbage", ["laoshan-plant"], [ns(2026, 5, 2, 18, 0)], [report]))
    rate = next(p for p in out.points if p.measurement == "indicator" and p.tags["indicator"] == "recycling_rate")
    assert rate.fields["value"] == 1.0 and rate.fields["inconsistent"] == 1 and "recovered" in rate.fields["reason"]
    ytd = next(p for p in out.points if p.measurement == "indicator" and p.tags["indicator"] == "recycling_rate_ytd")
    assert ytd.fields["value"] == 1.0 and ytd.fields["inconsistent"] == 1


def test_collection_rate_never_goes_negative_when_overdue_bins_fell_silent() -> None:
    p = GarbageProcessor(load_plan(), MemoryHistory())
    day1, day3 = ns(2026, 5, 1, 8, 0), ns(2026, 5, 3, 8, 0)
    # three bins full on day 1 and silent since; one bin reports (empty) on day 3
    rows = [{"fill_level": 0.95}] * 3 + [{"fill_level": 0.1}]
    b = batch("garbage", ["zhonghan-community"] * 4, [day1, day1, day1, day3], rows)
    b.sensor_id[:] = ["b1", "b2", "b3", "b4"]
    out = p.compute(b, np.array([local_day(np.array([day3]))[0]]))
    rate = next(p for p in out.points if p.measurement == "indicator" and p.tags["indicator"] == "collection_rate")
    assert rate.fields["value"] == pytest.approx(1 / 4)


def test_year_ends_are_the_last_day_of_each_year_touched() -> None:
    days = local_day(np.array([ns(2026, 12, 30, 9), ns(2026, 12, 31, 23, 59), ns(2027, 1, 1, 0, 1)]))
    assert year_ends(days) == [int(days[1]), int(days[2])]


def test_a_batch_across_new_year_closes_the_old_year_and_opens_the_new_one() -> None:
    p = AirProcessor(load_plan(), MemoryHistory())
    hours = [ns(2026, 12, 31, h, 30) for h in range(24)] + [ns(2027, 1, 1, h, 30) for h in range(24)]
    rows = [{"pm25": 30.0 if i < 24 else 40.0, "pm10": 50.0, "so2": 5.0, "no2": 20.0, "co": 0.5, "o3": 60.0}
            for i in range(48)]
    out = run(p, batch("air", ["zhonghan"] * 48, hours, rows))
    ytd = {pt.ts: pt.fields for pt in out.points if pt.measurement == "indicator" and pt.tags["scope"] == "district"}
    old, new = ytd[ns(2026, 12, 31)], ytd[ns(2027, 1, 1)]
    assert old["value"] == pytest.approx(30.0) and old["remaining_days"] == 0 and old["feasible"] == 1
    assert new["value"] == pytest.approx(40.0) and new["remaining_days"] == 364
    assert new["required_rest"] == pytest.approx((35 * 365 - 40) / 364)


def test_a_broken_operator_registry_fails_at_start_naming_the_file(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    bad = tmp_path / "sites.toml"
    bad.write_text('[[site]]\nid = "x"\nname = "x"\nname_zh = "x"\ndomain = "fire"\nlat = 0\nlon = 0\n')
    monkeypatch.setenv("SMARTCITY_SITES", str(bad))
    load_registry.cache_clear()
    try:
        with pytest.raises(ValueError, match=f"(?s)site registry {bad}.*site.0.lat"):
            FireProcessor(load_plan(), MemoryHistory())
    finally:
        load_registry.cache_clear()


def test_pm25_outlook_uses_the_seasonal_pattern_of_past_years_from_history() -> None:
    first = ns(2023, 1, 1)
    past = [Point("air_daily", {"site": "zhonghan"}, {"pm25": 30 + 15 * np.cos(2 * np.pi * (d % 365) / 365)},
                  first + d * 86400 * 10**9) for d in range(3 * 365)]  # winter-heavy
    p = AirProcessor(load_plan(), MemoryHistory(past))
    hours = [ns(2026, 12, 1, h, 30) for h in range(24)]
    rows = [{"pm25": 20.0, "pm10": 50.0, "so2": 5.0, "no2": 20.0, "co": 0.5, "o3": 60.0}] * 24
    out = run(p, batch("air", ["zhonghan"] * 24, hours, rows))
    ytd = next(pt.fields for pt in out.points if pt.measurement == "indicator" and pt.tags["scope"] == "district")
    assert ytd["seasonal"] == 1 and ytd["value"] == pytest.approx(20.0)
    assert ytd["projection"] > 20.5  # December ahead is dirtier than 1 December in the past years' pattern
    flat = AirProcessor(load_plan(), MemoryHistory())
    plain = next(pt.fields for pt in run(flat, batch("air", ["zhonghan"] * 24, hours, rows)).points
                 if pt.measurement == "indicator" and pt.tags["scope"] == "district")
    assert plain["seasonal"] == 0 and plain["projection"] == pytest.approx(20.0)


def test_fire_codes_carry_from_the_previous_day_in_history() -> None:
    noon = {"temperature": 15.0, "humidity": 40.0, "wind_speed": 10.0, "rain_24h": 0.0}
    day_before = Point("fire_daily", {"site": "jufeng"}, {"ffmc": 60.0, "dmc": 30.0, "dc": 300.0}, ns(2026, 3, 31))
    stale = Point("fire_daily", {"site": "huayan"}, {"ffmc": 60.0, "dmc": 30.0, "dc": 300.0}, ns(2026, 3, 24))
    out = run(FireProcessor(load_plan(), MemoryHistory([day_before, stale])),
              batch("fire", ["jufeng", "huayan"], [ns(2026, 4, 1, 12, 0)] * 2, [noon, noon]))
    daily = {p.tags["site"]: p.fields for p in out.points if p.measurement == "fire_daily"}
    w = [np.array([noon[k]]) for k in ("temperature", "humidity", "wind_speed", "rain_24h")]
    carried = fwi_daily(*w, np.array([4]), ffmc0=60.0, dmc0=30.0, dc0=300.0)
    start_up = fwi_daily(*w, np.array([4]))  # more than 7 days old: not carried
    assert daily["jufeng"]["dc"] == pytest.approx(round(float(carried.dc[0]), 3))
    assert daily["huayan"]["dc"] == pytest.approx(round(float(start_up.dc[0]), 3))


def test_lots_known_from_the_last_30_days_of_results_count_as_registered() -> None:
    seen = [Point("parking_hourly", {"site": lot}, {"capacity": 100.0}, ts)
            for lot, ts in (("lot-10-days-ago", ns(2026, 3, 22, 9)), ("lot-40-days-ago", ns(2026, 2, 20, 9)))]
    out = run(ParkingProcessor(load_plan(), MemoryHistory(seen)),
              batch("parking", ["zhonghan-mall"], [ns(2026, 4, 1, 9, 0)], [{"capacity": 1200, "occupied": 600}]))
    rate = next(p for p in out.points if p.measurement == "indicator" and p.tags["indicator"] == "networked_rate")
    assert rate.fields["registered"] == len(set(expected_sites("parking")) | {"zhonghan-mall", "lot-10-days-ago"})
