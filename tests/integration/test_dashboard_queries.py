"""Every panel's Flux query, with Grafana's variables substituted, runs against the real InfluxDB
after a simulated day through the pipeline and returns the columns the panel expects."""
from __future__ import annotations

import re

import pytest

from dashboards.generate import all_dashboards
from smartcity.clients import influx_client
from smartcity.settings import Settings
from tests.conftest import DAY_START

pytestmark = pytest.mark.integration
PANELS = [(d, p) for d in all_dashboards() for p in d.panels]


def substitute(flux: str, settings: Settings) -> str:
    """What Grafana sends: time range, window period and `site` variable filled in, our buckets named."""
    flux = flux.replace("v.timeRangeStart", f"time(v: {(DAY_START - 86400) * 10**9})")
    flux = flux.replace("v.timeRangeStop", "now()").replace("v.windowPeriod", "1h")
    flux = flux.replace("${site:regex}", ".*")
    flux = flux.replace('bucket: "compliance"', f'bucket: "{settings.influx.bucket_compliance}"')
    return flux.replace('bucket: "telemetry"', f'bucket: "{settings.influx.bucket_raw}"')


def test_the_panel_count(record_property) -> None:  # noqa: ANN001
    record_property("panels", len(PANELS))
    print(f"\n{len(PANELS)} panels in {len(all_dashboards())} dashboards")
    assert len(PANELS) >= 30


@pytest.mark.parametrize("dash, panel", PANELS, ids=[f"{d.uid}:{p.title[:40]}" for d, p in PANELS])
def test_panel_query_returns_what_the_panel_expects(pipeline_day, dash, panel) -> None:  # noqa: ANN001
    a, _, _ = pipeline_day
    flux = substitute(panel.flux, a)
    assert not re.search(r"\$\{|v\.\w+", flux), "unsubstituted variable"
    with influx_client(a) as client:
        tables = client.query_api().query(flux)
    rows = [r.values for t in tables for r in t.records]
    assert rows, f"{dash.uid} / {panel.title}: no rows"
    missing = [c for c in panel.expect if all(c not in r for r in rows)]
    assert not missing, f"{dash.uid} / {panel.title}: rows lack {missing}; got {sorted(rows[0])}"
    values = [r["_value"] for r in rows if r.get("_value") is not None]
    if "_value" in panel.expect:
        assert values, "every _value is empty"
