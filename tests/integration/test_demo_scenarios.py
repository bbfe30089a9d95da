"""Each domain's episode of the demo scenario through the real pipeline (bridge, processor, alert router,
the demo's webhook, SMTP and MQTT subscribers), checked against the manifest; and the same check fails
when the router runs a config without one of the rules the manifest relies on."""
from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from infra.settings import Settings
from simulators.engine import MODELS
from smartcity.demo import run_demo
from smartcity.demoloop import DEPLOYED_RULES

pytestmark = pytest.mark.integration


def _play(settings: Settings, domain: str, rules: Path = DEPLOYED_RULES) -> tuple[int, str]:
    out = io.StringIO()
    code = run_demo(settings, sensors=4, console=Console(file=out, width=160), domains=[domain], rules=rules,
                    silence=False)
    return code, out.getvalue()


@pytest.mark.parametrize("domain", list(MODELS))
def test_a_domains_episode_fires_is_delivered_acknowledged_and_resolved_as_the_manifest_says(
        settings: Settings, domain: str) -> None:
    code, text = _play(settings, domain)
    assert code == 0, text
    assert "every expected breach fired, was delivered on every channel" in text
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
    breach = next(r for r in rows if r[:2] == [domain, "breach"])
    assert breach[2] != "0" and len(set(breach[2:7])) == 1, breach   # expected = fired = deliv = acked = resolved


def test_removing_a_rule_from_the_config_makes_the_demo_check_fail(settings: Settings, tmp_path: Path) -> None:
    text = DEPLOYED_RULES.read_text()
    raw = tomllib.loads(text)
    assert "air.aqi_hourly" in raw["rules"]
    start = text.index('[rules."air.aqi_hourly"]')
    end = text.index("[", start + 1)
    changed = tmp_path / "alerts.toml"
    changed.write_text(text[:start] + text[end:])   # its `for` (1 h) and clear_below (140) gone
    code, out = _play(settings, "air", changed)
    assert code == 1, out
    assert "air.aqi_hourly zhonghan (haze): expected to fire between" in out and "the manifest check failed" in out
