"""The wall picture: every plan target, red where missed, 'baseline not set' instead of a flattering
number, the outlook sentence, and Chinese labels when a CJK font exists on disk."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from dashboards.preview import cjk_font, draw, standings
from dashboards.targets import TARGETS, plan_target_keys

DAY = {"remaining_days": 35, "feasible": 1}
INDICATORS = {
    ("air", "pm25_ytd"): {"value": 35.4, "target": 35.0, "stretch": 33.5, "projection": 35.3, "required_rest": 31.2, **DAY},
    ("seawater", "good_share_ytd"): {"value": 1.0, "target": 1.0, "projection": 1.0, "required_rest": 1.0, **DAY},
    ("parking", "networked_rate"): {"value": 1.0, "target": 1.0},
    ("parking", "spaces_added"): {"target": 20000.0, "baseline_set": 0, "networked_spaces": 6030.0},
    ("fire", "zones_covered"): {"value": 0.8, "target": 1.0},
    ("garbage", "recycling_rate_ytd"): {"value": 0.38, "target": 0.35, "projection": 0.38, "required_rest": 0.1, **DAY},
    ("garbage", "harmless_rate"): {"value": 1.0, "target": 1.0},
    ("garbage", "collection_rate"): {"value": 0.9, "target": 1.0},
}


def test_every_target_has_a_tile_with_the_right_state() -> None:
    data = standings(INDICATORS)
    assert {s.target.key for s in data} == plan_target_keys() - {"plan.air.pm25_annual_stretch"}
    state = {s.target.key: s.state for s in data if s.target.domain in {d for d, _ in INDICATORS}}
    assert all(s.state == "no-data" for s in data if s.target.domain not in {d for d, _ in INDICATORS})
    assert state == {"plan.air.pm25_annual": "missed", "plan.seawater.good_share": "met",
                     "plan.parking.networked_share": "met", "plan.parking.new_public_spaces": "baseline-not-set",
                     "plan.fire.zones_covered": "missed", "plan.garbage.recycling_rate": "met",
                     "plan.garbage.harmless_rate": "met", "plan.garbage.collection_rate": "missed",
                     "plan.forest.coverage": "not-measured"}


def test_the_outlook_says_what_the_rest_of_the_year_must_deliver() -> None:
    pm25 = next(s for s in standings(INDICATORS) if s.target.key == "plan.air.pm25_annual")
    en, zh = pm25.outlook_text()
    assert en.startswith("must average ≤ 31.2 µg/m³ for the remaining 35 days to finish below 35")
    assert "剩余35天" in zh and "31.2" in zh
    spaces = next(s for s in standings(INDICATORS) if s.target.key == "plan.parking.new_public_spaces")
    assert spaces.outlook_text()[0] == "baseline not set (networked now: 6,030)"


def test_an_out_of_reach_target_says_so() -> None:
    hopeless = dict(INDICATORS)
    hopeless[("air", "pm25_ytd")] = {**INDICATORS[("air", "pm25_ytd")], "required_rest": -3.0, "feasible": 0}
    pm25 = next(s for s in standings(hopeless) if s.target.key == "plan.air.pm25_annual")
    assert pm25.outlook_text()[0].startswith("out of reach")


def test_the_picture_is_1600_by_900_and_chinese_when_a_cjk_font_is_on_disk(tmp_path: Path) -> None:
    out = tmp_path / "wall.png"
    chinese = draw(out, standings(INDICATORS), firing=3)
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1600, 900)
    on_disk = any("wqy" in p.name.lower() or "cjk" in p.name.lower() for p in Path("/usr/share/fonts").rglob("*.tt*"))
    assert chinese == on_disk == (cjk_font() is not None)


@pytest.mark.parametrize("t", TARGETS, ids=lambda t: t.key)
def test_steps_turn_red_exactly_where_the_target_is_missed(t) -> None:  # noqa: ANN001
    steps = t.steps()
    goal = t.value()
    colour_at = lambda v: [c for s, c in steps if s is None or v >= s][-1]  # noqa: E731  Grafana: last step <= v
    if t.lower_is_better and t.strict:   # better than the target: the target itself is missed
        assert colour_at(goal) == "red" and colour_at(goal - 0.01) != "red"
    elif t.lower_is_better:              # at most the target
        assert colour_at(goal) != "red" and colour_at(goal + 0.01) == "red"
    else:
        assert colour_at(goal) == "green" and colour_at(goal - 0.001) == "red"


@pytest.mark.parametrize(("key", "value", "goal", "shown"), [
    ("recycling_rate_ytd", 0.34996, 0.35, "34.996%"),   # a miss never reads as the target itself
    ("recycling_rate_ytd", 0.3496, 0.35, "34.96%"),
    ("recycling_rate_ytd", 0.349, 0.35, "34.9%"),
    ("recycling_rate_ytd", 0.35, 0.35, "35%"),          # met exactly: the plain figure
    ("recycling_rate_ytd", 0.4, 0.35, "40%"),
    ("pm25_ytd", 35.02, 35.0, "35.02 µg/m³"),           # lower is better, strictly: 35.0 would look met
    ("pm25_ytd", 35.0, 35.0, "35.0 µg/m³"),             # equal: a miss of "better than 35", shown as it is
    ("pm25_ytd", 34.0, 35.0, "34.0 µg/m³"),
])
def test_a_missed_figure_is_shown_with_the_decimals_that_tell_it_from_the_target(
        key: str, value: float, goal: float, shown: str) -> None:
    domain = "air" if key.startswith("pm25") else "garbage"
    s = next(s for s in standings({(domain, key): {"value": value, "target": goal}}) if s.target.indicator == key)
    assert s.shown == shown


def test_a_red_target_names_its_open_breach_alerts_or_says_why_there_is_none() -> None:
    from dashboards.alertloop import LoopStats
    from dashboards.preview import why_red

    data = {s.target.key: s for s in standings(INDICATORS)}
    open_in_garbage = LoopStats(open={("garbage", "breach"): (1, 120.0), ("fire", "offline"): (3, 60.0)})
    assert why_red(data["plan.garbage.collection_rate"], open_in_garbage)[0] == "1 breach alert(s) of garbage open"
    assert "check the alert rules" in why_red(data["plan.fire.zones_covered"], open_in_garbage)[0]  # offline only
    assert "judged at year end" in why_red(data["plan.air.pm25_annual"], open_in_garbage)[0]       # year to date
    assert why_red(data["plan.garbage.harmless_rate"], open_in_garbage) is None                    # not red
