"""The demo scenario's episodes, replayed through the real processor plug-ins and the real alert state
machine (no services): every expected alert fires in its window and resolves when it should, nothing
else fires, and a deployment whose rules differ from the manifest's fails the check."""
from __future__ import annotations

import json
import tomllib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from alerts.router import AlertConfig
from alerts.state import AlertBook
from processors.plugin import local_day
from processors.registry import processors
from schemas import domain as get_domain
from schemas.batch import ReadingBatch
from schemas.thresholds import load_plan
from schemas.timeparse import parse_ts
from simulators.engine import MODELS, SimOptions, Simulation
from simulators.scenarios import HOUR_NS, SCENARIOS
from smartcity.democheck import Seen, Verdict, check
from tests.unit.fakes import MemoryHistory

REPO = Path(__file__).resolve().parents[2]
DEPLOYED = REPO / "deploy" / "config" / "alerts.toml"
INTERVAL = 600


class Readings:
    """A sink that keeps every published reading, per domain, as columns."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[str, str, int, dict[str, float]]]] = defaultdict(list)

    def publish(self, topic: str, payload: bytes) -> None:
        _, domain, site, sensor, _ = topic.split("/")
        doc = json.loads(payload)
        for r in doc if isinstance(doc, list) else [doc]:
            self.rows[domain].append((sensor, site, parse_ts(r["ts"]), r["values"]))

    def batch(self, domain: str) -> ReadingBatch:
        fields = get_domain(domain).fields
        rows = sorted(self.rows[domain], key=lambda r: r[2])
        n = len(rows)
        values = np.array([[r[3].get(f, np.nan) for f in fields] for r in rows], float)
        return ReadingBatch(domain, np.array([r[0] for r in rows], object), np.array([r[1] for r in rows], object),
                            np.array([r[2] for r in rows], np.int64), values, np.full(n, -1, np.int64),
                            np.full(n, np.nan), np.full(n, np.nan), np.array(["native"] * n, object),
                            np.zeros(n, np.int64))


def replay(config: AlertConfig, domains: list[str] | None = None, scenario: str = "demo-day",
           seed: int = 2026) -> tuple[Verdict, list[dict]]:
    """The scenario hour by hour through the plug-ins and one AlertBook; each alert is acknowledged as
    it fires. Wall time is the hour's index (seconds)."""
    names = domains or list(MODELS)
    sim = Simulation(SimOptions(domains=names, sensors=10, ticks=2 * 86400 // INTERVAL, interval=INTERVAL, rate=0,
                                seed=seed, scenario=scenario))
    sink = Readings()
    sim.run(sink)
    expected = sim.expected()
    book = AlertBook({name: rule.policy() for name, rule in config.rules.items()})
    plan, history = load_plan(), MemoryHistory()
    plugins = {d: processors()[d](plan, history) for d in names}
    batches = {d: sink.batch(d) for d in names}
    seen: dict[str, Seen] = {}
    for hour in range(48):
        end = sim.start + (hour + 1) * HOUR_NS
        for d in names:
            b = batches[d]
            buffer = b.take(b.ts < end)
            fresh = buffer.ts >= end - HOUR_NS
            if not fresh.any():
                continue
            out = plugins[d].compute(buffer, np.unique(local_day(buffer.ts[fresh])))
            history.points.extend(out.points)
            for o in out.observations:
                alert, notes = book.observe(o.to_dict(), float(hour))
                for n in notes:
                    s = seen.setdefault(n.alert["id"], Seen(n.alert["id"], n.alert["rule"], n.alert["entity"], d))
                    s.note(n.kind, "memory", n.alert)
                    if n.kind == "firing":
                        ack = book.acknowledge(n.alert["id"], "test", "dispatched", float(hour))[1]
                        s.note("acknowledged", "memory", ack[0].alert)
    return check(expected, list(seen.values()), lambda s: {"memory"}), expected


@pytest.fixture(scope="module")
def deployed() -> AlertConfig:
    return AlertConfig.load(DEPLOYED)


def test_every_domain_has_an_episode_and_each_episode_expects_an_alert() -> None:
    s = SCENARIOS["demo-day"]
    assert s.domains() == sorted(MODELS)
    expected = s.expected(0)
    assert {x.domain for x in expected} == set(MODELS)
    assert all(x.earliest <= x.latest <= x.due and x.resolves_after <= x.resolves_by for x in expected)


def test_demo_day_through_the_plug_ins_fires_every_expected_alert_and_nothing_else(deployed: AlertConfig) -> None:
    verdict, expected = replay(deployed)
    assert verdict.problems == []
    assert {d: (r.expected, r.fired, r.acknowledged, r.resolved) for (d, _), r in verdict.rows.items()} == {
        d: (n, n, n, n) for d, n in _count(expected).items()}


def test_removing_a_rule_from_the_config_makes_the_check_fail(tmp_path: Path) -> None:
    raw = tomllib.loads(DEPLOYED.read_text())
    del raw["rules"]["air.aqi_hourly"]   # its `for` (1 h) and hysteresis (clear below 140) are gone
    verdict, _ = replay(AlertConfig.model_validate(raw), ["air"])
    assert not verdict.ok
    assert any("air.aqi_hourly zhonghan" in p and "fired at" in p for p in verdict.problems), verdict.problems


def test_a_for_longer_than_the_episode_means_the_alert_never_fires(deployed: AlertConfig) -> None:
    raw = deployed.model_dump(by_alias=True)
    raw["rules"]["parking.saturated"] = {"for": 6 * 3600}   # the sale saturates the lot for 5 hours
    verdict, _ = replay(AlertConfig.model_validate(raw), ["parking"])
    assert len(verdict.problems) == 1 and verdict.problems[0].startswith("parking.saturated zhonghan-mall (sale): "
                                                                         "expected to fire between")
    assert verdict.problems[0].endswith("never fired")


@pytest.mark.parametrize("seed", [7, 8])
def test_the_calm_scenario_fires_nothing_whatever_the_seed(deployed: AlertConfig, seed: int) -> None:
    verdict, expected = replay(deployed, scenario="calm", seed=seed)
    assert expected == [] and verdict.problems == []


def _count(expected: list[dict]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for x in expected:
        out[x["domain"]] += 1
    return dict(out)


def test_two_episodes_shaping_one_site_are_refused() -> None:
    from simulators.scenarios import EPISODES, Scenario

    haze = next(e for e in EPISODES if e.name == "haze")
    with pytest.raises(ValueError, match="two episodes shape air/zhonghan"):
        Scenario("clash", "", 2, [haze, haze])


def test_episodes_overlapping_in_time_at_different_sites_all_check_out(deployed: AlertConfig) -> None:
    import dataclasses

    from simulators import scenarios

    haze = next(e for e in scenarios.EPISODES if e.name == "haze")
    twin = dataclasses.replace(haze, name="haze2", site="jinjialing", expects=lambda d0: [
        dataclasses.replace(x, entity="jinjialing", episode="haze2") for x in haze.expects(d0)])
    scenarios.SCENARIOS["overlap"] = scenarios.Scenario("overlap", "two hazes at once", 2, [haze, twin])
    try:
        verdict, expected = replay(deployed, ["air"], scenario="overlap")
    finally:
        del scenarios.SCENARIOS["overlap"]
    assert verdict.problems == [] and len(expected) == 4
