"""Every panel's Flux query, with Grafana's variables substituted, runs against the real InfluxDB
after a simulated day through the pipeline and returns the columns the panel expects."""
from __future__ import annotations

import re

import pytest

from dashboards.generate import all_dashboards
from infra.clients import influx_client
from infra.settings import Settings
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


def test_wall_png_shows_the_five_domain_tiles_with_target_and_actual(pipeline_day, tmp_path) -> None:  # noqa: ANN001
    import struct
    import subprocess
    import sys

    from tests.helpers import REPO, settings_env

    a, _, _ = pipeline_day
    out = tmp_path / "wall.png"
    result = subprocess.run([sys.executable, "-m", "smartcity.cli", "wall", "--png", str(out)], cwd=REPO,
                            env=settings_env(a), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1600, 900)
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line and not line.startswith(("firing", "wrote"))}
    assert set(lines) == {"air", "seawater", "parking", "fire", "garbage"}
    for domain, line in lines.items():
        assert "no data" not in line and "target" in line and ("meets" in line or "misses" in line), line
    firing = int(next(l for l in result.stdout.splitlines() if l.startswith("firing alerts:")).split(":")[1])
    assert firing > 0  # the sensors fell silent after the simulated day: offline alerts are firing
