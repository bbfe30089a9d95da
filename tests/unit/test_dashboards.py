"""Dashboards as code: built with grafana-foundation-sdk's typed builders, the committed JSON is what the
Python generates, it fits Grafana's schema, and every target and colour step comes from the plan file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard as SdkDashboard

from dashboards.generate import OUT, all_dashboards, main, render
from dashboards.targets import PM25_STRETCH, TARGETS, plan_target_keys
from schemas.thresholds import load_plan

DASHBOARDS = all_dashboards()
PANEL_TYPES = {"stat", "timeseries", "table", "heatmap", "geomap", "gauge"}


def test_there_is_a_wall_a_dashboard_per_domain_pipeline_health_and_the_alert_loop() -> None:
    from schemas import domain_names

    assert [d.uid for d in DASHBOARDS] == ["laoshan-city-wall", *(f"laoshan-{n}" for n in domain_names()),
                                           "laoshan-pipeline", "laoshan-alert-loop"]


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_committed_json_equals_the_generated_json(d) -> None:  # noqa: ANN001
    assert (OUT / f"{d.uid}.json").read_text() == render(d), "run smartcity dashboards generate and commit"


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_json_round_trips_through_the_foundation_sdk_types(d) -> None:  # noqa: ANN001
    data = json.loads(render(d))
    model = SdkDashboard.from_json(data)
    again = model.to_json()
    for key in ("uid", "title", "tags", "timezone", "refresh", "schemaVersion", "time"):
        assert json.loads(json.dumps(again[key], default=lambda o: o.to_json())) == data[key], key
    assert len(again["panels"]) == len(data["panels"]) == len(d.panels)
    for panel, original in zip(again["panels"], data["panels"]):
        p = json.loads(json.dumps(panel, default=lambda o: o.to_json()))
        assert p["type"] in PANEL_TYPES and p["title"] == original["title"]
        assert p["gridPos"] == original["gridPos"] and p["datasource"] == original["datasource"]
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert p["targets"][0]["query"] == original["targets"][0]["query"]


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_every_title_is_bilingual_and_every_query_uses_the_time_range(d) -> None:  # noqa: ANN001
    def has_cjk(s: str) -> bool:
        return any("\u4e00" <= ch <= "\u9fff" for ch in s)

    variables = [v["name"] for v in json.loads(render(d)).get("templating", {}).get("list", [])]
    assert has_cjk(d.title) and any(c.isascii() and c.isalpha() for c in d.title)
    for p in d.panels:
        assert has_cjk(p.title) and any(c.isascii() and c.isalpha() for c in p.title), p.title
        assert "v.timeRangeStart" in p.flux and "v.timeRangeStop" in p.flux, p.title
        if "${site" in p.flux:
            assert "site" in variables, p.title


def test_every_plan_target_of_the_plan_file_is_on_the_wall() -> None:
    tiled = {t.key for t in TARGETS}
    assert plan_target_keys() - tiled == {PM25_STRETCH}  # the stretch rides on the PM2.5 tile
    wall = json.loads(render(DASHBOARDS[0]))
    titles = [p["title"] for p in wall["panels"]]
    for t in TARGETS:
        if not t.not_measured:
            assert any(t.title_en in title for title in titles), t.key
    assert any("20,000" in title for title in titles)


def steps_of(uid: str, title_part: str) -> list:
    d = json.loads(render(next(d for d in all_dashboards() if d.uid == uid)))
    panel = next(p for p in d["panels"] if title_part in p["title"])
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]], panel["title"]


def test_an_operator_override_reaches_the_wall_and_the_dashboards(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    assert steps_of("laoshan-city-wall", "Recycling rate")[0] == [None, 0.35]
    override = tmp_path / "ops.toml"
    override.write_text(
        'version = "ops"\n'
        '[[threshold]]\nkey = "plan.garbage.recycling_rate"\nvalue = 0.4\nunit = "1"\nsource = "operator"\nfrom = 2021-01-01\n'
        '[[threshold]]\nkey = "plan.air.pm25_annual_stretch"\nvalue = 32\nunit = "µg/m³"\nsource = "operator"\nfrom = 2021-01-01\n'
        '[[threshold]]\nkey = "parking.saturated"\nvalue = 0.95\nunit = "1"\nsource = "operator"\nfrom = 2021-01-01\n')
    monkeypatch.setenv("SMARTCITY_PLAN_OVERRIDES", str(override))
    load_plan.cache_clear()
    try:
        steps, title = steps_of("laoshan-city-wall", "Recycling rate")
        assert steps == [None, 0.4] and "40%" in title
        assert steps_of("laoshan-garbage", "Recycling rate")[0] == [None, 0.4]
        assert steps_of("laoshan-air", "PM2.5 年均值")[0] == [None, 32.0, 35.0]
        assert steps_of("laoshan-parking", "District occupancy")[0] == [None, 0.85, 0.95]
        assert main(["--check"]) == 1  # the committed JSON is now stale: regenerate
    finally:
        load_plan.cache_clear()


def test_colour_steps_come_from_the_standards_in_the_plan_file() -> None:
    assert steps_of("laoshan-air", "Hourly AQI")[0] == [None, 51.0, 101.0, 151.0, 201.0, 301.0]
    assert steps_of("laoshan-fire", "FWI")[0] == [None, 5.0, 10.0, 20.0, 30.0]
    assert steps_of("laoshan-seawater", "Inorganic N")[0] == [None, 0.3, 0.4, 0.5]
