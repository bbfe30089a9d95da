"""The plug-ins' history in Flux (processors/history.py): local days become UTC ns of UTC+8 midnights,
tag filters are values, and no value can break out of its string literal."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.history import FluxHistory, flux_filter, flux_string

UTC8 = dt.timezone(dt.timedelta(hours=8))
DAY = int(np.datetime64("2026-03-01", "D").astype(np.int64))  # local day number of 2026-03-01


def local_midnight_ns(*date: int) -> int:
    return int(dt.datetime(*date, tzinfo=UTC8).timestamp()) * 10**9


def recording(rows: list[dict] | None = None) -> tuple[FluxHistory, list[str]]:
    """A FluxHistory whose InfluxDB answers `rows` and remembers every query."""
    asked: list[str] = []
    return FluxHistory(lambda flux: asked.append(flux) or list(rows or []), "compliance"), asked


def flux_literal_value(text: str) -> tuple[str, str]:
    """(value, rest) of the Flux string literal at the start of `text`, decoded as the Flux spec says;
    fails on an unescaped `${` (an interpolated expression)."""
    assert text[0] == '"'
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "$": "$"}
    out, i = [], 1
    while text[i] != '"':
        if text[i] == "\\":
            out.append(escapes[text[i + 1]])
            i += 2
        else:
            assert not text.startswith("${", i), f"interpolation in {text!r}"
            out.append(text[i])
            i += 1
    return "".join(out), text[i + 1:]


def test_daily_reads_local_days_as_utc_midnights_with_tag_filters_as_values() -> None:
    history, asked = recording()
    history.daily("indicator", "value", DAY, DAY + 2, tags={"domain": "parking", "indicator": "spaces_added"})
    start, stop = local_midnight_ns(2026, 3, 1), local_midnight_ns(2026, 3, 3)
    assert start == int(dt.datetime(2026, 2, 28, 16, tzinfo=dt.timezone.utc).timestamp()) * 10**9
    assert asked == [
        f'from(bucket: "compliance") |> range(start: time(v: {start}), stop: time(v: {stop})) '
        '|> filter(fn: (r) => r._measurement == "indicator" and (r["_field"] == "value") '
        'and (r["domain"] == "parking") and (r["indicator"] == "spaces_added")) '
        '|> keep(columns: ["_time", "_value", "site"])']


def test_rows_become_columns_of_local_days_values_and_kept_tags() -> None:
    rows = [{"_time": local_midnight_ns(2026, 3, 1) + 30 * 60 * 10**9, "_value": 3, "site": "a"},
            {"_time": local_midnight_ns(2026, 3, 1) - 1, "_value": 4.5}]
    history, _ = recording(rows)
    s = history.daily("air_daily", "pm25", DAY - 1, DAY + 1)
    assert s.days.tolist() == [DAY, DAY - 1] and s.values.tolist() == [3.0, 4.5]
    assert s.tags["site"].tolist() == ["a", ""]


def test_latest_asks_once_for_every_field_and_answers_per_field() -> None:
    t = local_midnight_ns(2026, 2, 28)
    history, asked = recording([{"_time": t, "_value": 80.0, "_field": "ffmc", "site": "jufeng"},
                                {"_time": t, "_value": 20.0, "_field": "dmc", "site": "jufeng"}])
    got = history.latest("fire_daily", ("ffmc", "dmc", "dc"), DAY - 7, DAY)
    assert len(asked) == 1
    assert '(r["_field"] == "ffmc" or r["_field"] == "dmc" or r["_field"] == "dc")' in asked[0]
    assert asked[0].endswith('|> keep(columns: ["_time", "_value", "_field", "site"]) |> last()')
    assert got["ffmc"].values.tolist() == [80.0] and got["dmc"].tags["site"].tolist() == ["jufeng"]
    assert len(got["dc"].values) == 0 and got["dc"].tags["site"].dtype.kind == "U"


def test_a_tag_may_take_any_of_several_values_and_none_matches_nothing() -> None:
    assert flux_filter("m", ["f"], {"site": ["a", "b"]}).endswith('and (r["site"] == "a" or r["site"] == "b")')
    assert flux_filter("m", ["f"], {"site": []}).endswith("and false")


@pytest.mark.parametrize("value, literal", [
    ('a"b', r'"a\"b"'),
    ("a\\b", r'"a\\b"'),
    ("${v1.x}", r'"\${v1.x}"'),
    ('x") or true or (r.site == "', r'"x\") or true or (r.site == \""'),
    ("line\nbreak\t", r'"line\nbreak\t"'),
    ("崂山水库 $ {", '"崂山水库 $ {"'),
])
def test_a_hostile_site_name_stays_inside_its_string_literal(value: str, literal: str) -> None:
    history, asked = recording()
    history.daily("indicator", "value", DAY, DAY + 1, tags={"site": value})
    assert f'(r["site"] == {literal})) |>' in asked[0]


@given(st.one_of(st.lists(st.sampled_from(['"', "\\", "${", "$", "{", "}", "\n", "\r", "\t", "a", "崂"])).map("".join),
                 st.text()))
def test_every_string_decodes_back_to_itself_and_ends_where_its_literal_ends(value: str) -> None:
    decoded, rest = flux_literal_value(flux_string(value) + ") |> last()")
    assert decoded == value and rest == ") |> last()"
