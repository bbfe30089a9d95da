"""Dashboards as code: the committed JSON is what the Python generates, and it fits Grafana's schema
(the grafana-foundation-sdk's typed models)."""
from __future__ import annotations

import json

import pytest
from grafana_foundation_sdk.models.dashboard import Dashboard as SdkDashboard

from dashboards.generate import OUT, all_dashboards, render

DASHBOARDS = all_dashboards()
PANEL_TYPES = {"stat", "timeseries", "table", "heatmap", "geomap", "gauge"}


def test_there_is_a_wall_a_dashboard_per_domain_pipeline_health_and_the_alert_loop() -> None:
    assert [d.uid for d in DASHBOARDS] == ["laoshan-city-wall", "laoshan-air", "laoshan-seawater", "laoshan-parking",
                                           "laoshan-fire", "laoshan-garbage", "laoshan-pipeline", "laoshan-alert-loop"]


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_committed_json_equals_the_generated_json(d) -> None:  # noqa: ANN001
    assert (OUT / f"{d.uid}.json").read_text() == render(d), "run python -m dashboards.generate and commit"


@pytest.mark.parametrize("d", DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_json_round_trips_through_the_foundation_sdk_types(d) -> None:  # noqa: ANN001
    data = json.loads(render(d))
    model = SdkDashboard.from_json(data)
    again = model.to_json()
    for key in ("uid", "title", "tags", "timezone", "refresh", "schemaVersion", "time"):
        assert json.loads(json.dumps(again[key], default=lambda o: o.to_json())) == data[key], key
    assert len(again["panels"]) == len(data["panels"])
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

    assert has_cjk(d.title) and any(c.isascii() and c.isalpha() for c in d.title)
    for p in d.panels:
        assert has_cjk(p.title) and any(c.isascii() and c.isalpha() for c in p.title), p.title
        assert "v.timeRangeStart" in p.flux and "v.timeRangeStop" in p.flux, p.title
        if "${site" in p.flux:
            assert any(v["name"] == "site" for v in d.variables), p.title
