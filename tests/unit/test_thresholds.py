"""The plan-threshold file: complete, sourced, dated, overridable, and picked by a reading's date."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from schemas.thresholds import PlanThresholds, load_plan, local_date, read_file

DAY = dt.date(2026, 11, 26)
UTC8 = dt.timezone(dt.timedelta(hours=8))


def ns(local: dt.datetime) -> int:
    """UTC ns of a local (UTC+8) wall-clock time."""
    return int(local.replace(tzinfo=UTC8).timestamp()) * 10**9


def test_plan_targets_are_as_written_in_the_plan() -> None:
    plan = load_plan()
    assert plan.value("plan.air.pm25_annual", DAY) == 35.0
    assert plan.value("plan.air.pm25_annual_stretch", DAY) == 33.5
    assert plan.value("plan.seawater.good_share", DAY) == 1.0
    assert plan.value("plan.garbage.recycling_rate", DAY) == 0.35
    assert plan.value("plan.parking.new_public_spaces", DAY) == 20000


def test_every_entry_has_unit_source_and_start_date() -> None:
    for t in load_plan().threshold:
        assert t.unit and len(t.source) > 3 and t.valid_from <= dt.date(2026, 11, 26), t.key


def test_hj633_rows_have_one_concentration_per_iaqi_breakpoint_and_rise() -> None:
    plan = load_plan()
    iaqi = plan.get("hj633.iaqi", DAY).array()
    for item in ["SO2_24H", "SO2_1H", "NO2_24H", "NO2_1H", "PM10_24H", "CO_24H", "CO_1H", "O3_1H", "O3_8H", "PM25_24H"]:
        row = plan.get(f"hj633.{item}", DAY).array()
        assert 2 <= len(row) <= len(iaqi) and (row[1:] > row[:-1]).all(), item


def test_a_reading_is_judged_by_the_entry_in_force_at_its_own_date(tmp_path: Path) -> None:
    override = tmp_path / "ops.toml"
    override.write_text(
        'version = "ops-1"\n'
        '[[threshold]]\nkey = "gb3095.pm25_24h"\nvalue = 75\nunit = "µg/m³"\n'
        'source = "GB 3095-2012"\nfrom = 2016-01-01\nto = 2026-02-28\n'
        '[[threshold]]\nkey = "gb3095.pm25_24h"\nvalue = 60\nunit = "µg/m³"\n'
        'source = "GB 3095-2026 transitional"\nfrom = 2026-03-01\n'
    )
    plan = load_plan(override=override)
    assert plan.value("gb3095.pm25_24h", dt.date(2026, 2, 28)) == 75
    assert plan.value("gb3095.pm25_24h", dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.timezone.utc)) == 60
    assert plan.value("gb3095.pm25_24h", 1_790_000_000 * 10**9) == 60  # ns timestamp, 2026-09
    assert plan.value("plan.air.pm25_annual", DAY) == 35.0  # untouched entries stay


def test_overlapping_ranges_for_one_key_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'version = "x"\n'
        '[[threshold]]\nkey = "k"\nvalue = 1\nunit = "1"\nsource = "abc"\nfrom = 2020-01-01\n'
        '[[threshold]]\nkey = "k"\nvalue = 2\nunit = "1"\nsource = "abc"\nfrom = 2021-01-01\n'
    )
    with pytest.raises(ValueError, match="overlap"):
        read_file(bad)


def test_missing_key_and_not_yet_in_force_say_why() -> None:
    plan = load_plan()
    with pytest.raises(KeyError, match="no threshold 'nope'"):
        plan.get("nope", DAY)
    with pytest.raises(KeyError, match="not in force on 2000-01-01"):
        plan.get("plan.air.pm25_annual", dt.date(2000, 1, 1))


def test_override_replaces_same_key_and_start(tmp_path: Path) -> None:
    override = tmp_path / "o.toml"
    override.write_text('version = "o"\n[[threshold]]\nkey = "parking.saturated"\nvalue = 0.95\n'
                        'unit = "1"\nsource = "operator"\nfrom = 2021-01-01\n')
    merged = load_plan().merged(read_file(override))
    assert isinstance(merged, PlanThresholds) and merged.value("parking.saturated", DAY) == 0.95


def ops_change_at_local_midnight(tmp_path: Path) -> Path:
    """A made-up operator change: the PM2.5 24-h limit drops from 75 to 60 on local 2026-03-01."""
    override = tmp_path / "midnight.toml"
    override.write_text(
        'version = "ops-midnight"\n'
        '[[threshold]]\nkey = "gb3095.pm25_24h"\nvalue = 75\nunit = "µg/m³"\n'
        'source = "GB 3095-2012"\nfrom = 2016-01-01\nto = 2026-02-28\n'
        '[[threshold]]\nkey = "gb3095.pm25_24h"\nvalue = 60\nunit = "µg/m³"\n'
        'source = "made-up change for the boundary test"\nfrom = 2026-03-01\n')
    return override


def test_readings_either_side_of_local_midnight_are_judged_by_their_own_local_day(tmp_path: Path) -> None:
    plan = load_plan(override=ops_change_at_local_midnight(tmp_path))
    before = ns(dt.datetime(2026, 2, 28, 23, 59))   # 15:59 UTC on 02-28
    after = ns(dt.datetime(2026, 3, 1, 0, 1))       # 16:01 UTC on 02-28: still 02-28 in UTC
    assert plan.value("gb3095.pm25_24h", before) == 75
    assert plan.value("gb3095.pm25_24h", after) == 60
    # the local midnight itself starts the new day; one ns before it is the old one
    midnight = ns(dt.datetime(2026, 3, 1, 0, 0))
    assert plan.value("gb3095.pm25_24h", midnight) == 60 and plan.value("gb3095.pm25_24h", midnight - 1) == 75
    # the same instants as aware datetimes in UTC
    assert plan.value("gb3095.pm25_24h", dt.datetime(2026, 2, 28, 16, 1, tzinfo=dt.timezone.utc)) == 60
    assert plan.value("gb3095.pm25_24h", dt.datetime(2026, 2, 28, 15, 59, tzinfo=dt.timezone.utc)) == 75


def test_local_date_of_timestamps_datetimes_and_dates() -> None:
    assert local_date(ns(dt.datetime(2026, 12, 31, 23, 59, 59))) == dt.date(2026, 12, 31)
    assert local_date(ns(dt.datetime(2027, 1, 1, 0, 0))) == dt.date(2027, 1, 1)
    assert local_date(-8 * 3600 * 10**9) == dt.date(1970, 1, 1) and local_date(-8 * 3600 * 10**9 - 1) == dt.date(1969, 12, 31)
    assert local_date(dt.date(2026, 3, 1)) == dt.date(2026, 3, 1)


def test_a_naive_datetime_or_no_date_is_refused_with_what_to_pass() -> None:
    plan = load_plan()
    with pytest.raises(ValueError, match="naive datetime .* give it a timezone"):
        plan.value("gb3095.pm25_24h", dt.datetime(2026, 3, 1))
    with pytest.raises(TypeError, match="cannot tell the local day of None"):
        plan.value("gb3095.pm25_24h", None)  # type: ignore[arg-type]
