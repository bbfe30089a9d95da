"""Simulators without a broker: believable statistics, exact fault counts, reproducible bytes."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from schemas import domain
from schemas.adapters import PayloadError, parse, route
from schemas.timeparse import parse_ts
from simulators.air import AirModel
from simulators.base import Sensors
from simulators.engine import SimOptions, Simulation
from simulators.garbage import GarbageModel
from simulators.parking import ParkingModel

YEAR_START = parse_ts("2026-01-01T00:00:00+08:00")
HOUR = 3600 * 10**9


def hourly_year(model_cls, n: int, seed: int) -> tuple[np.ndarray, object]:
    model = model_cls(Sensors.place(model_cls.domain, n), np.random.default_rng(seed))
    rows = [model.step(YEAR_START + h * HOUR, 3600.0) for h in range(365 * 24)]
    return np.array(rows), model


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_simulated_year_of_air_has_an_annual_pm25_mean_near_the_configured_one(seed: int) -> None:
    values, model = hourly_year(AirModel, 5, seed)
    daily = values[:, :, model.fields.index("pm25")].reshape(365, 24, -1).mean(axis=1)
    annual = daily.mean()
    assert 0.8 * model.annual_mean <= annual <= 1.2 * model.annual_mean, annual
    days_over_75 = (daily > 75).sum(axis=0)
    assert (days_over_75 >= 3).all() and (days_over_75 <= 45).all(), days_over_75
    winter = daily[:59].mean()  # January-February (heating season)
    summer = daily[181:243].mean()  # July-August
    assert winter > 1.5 * summer


def test_air_pm10_exceeds_pm25_and_no2_peaks_at_rush_hour() -> None:
    values, model = hourly_year(AirModel, 5, 1)
    f = model.fields.index
    assert (values[:, :, f("pm10")] >= values[:, :, f("pm25")]).all()
    no2_by_hour = values[:, :, f("no2")].reshape(365, 24, -1).mean(axis=(0, 2))
    assert no2_by_hour[8] > no2_by_hour[3] * 1.3 and no2_by_hour[18] > no2_by_hour[3] * 1.3
    o3 = values[:, :, f("o3")].reshape(365, 24, -1)
    assert o3[150:240, 14].mean() > 1.5 * o3[0:60, 14].mean()  # summer afternoons


def test_parking_occupancy_stays_within_capacity_and_follows_the_week() -> None:
    values, model = hourly_year(ParkingModel, 7, 1)
    f = model.fields.index
    cap, occ, free = values[:, :, f("capacity")], values[:, :, f("occupied")], values[:, :, f("free")]
    assert (occ >= 0).all() and (occ <= cap).all() and (occ + free == cap).all()
    office = model.sensors.kind == "office"
    share = (occ / cap)[:, office].reshape(365, 24, -1)
    weekday_noon = share[[d for d in range(365) if (3 + d) % 7 < 5], 13].mean()  # 2026-01-01 is a Thursday
    weekend_noon = share[[d for d in range(365) if (3 + d) % 7 >= 5], 13].mean()
    assert weekday_noon > 0.7 and weekend_noon < 0.3


def test_garbage_fill_levels_stay_within_0_1_and_reset_on_collection() -> None:
    values, model = hourly_year(GarbageModel, 12, 1)
    f = model.fields.index
    fill = values[:, :, f("fill_level")]
    bins = ~model.plant
    assert np.nanmin(fill[:, bins]) >= 0 and np.nanmax(fill[:, bins]) <= 1
    collected = values[:, :, f("collected")] == 1
    before, after = fill[:-1][collected[1:]], fill[1:][collected[1:]]
    assert collected.sum() > 1000 and (after < 0.06).all() and (before > after).mean() > 0.95
    overdue = model.never_emptied
    assert not collected[:, overdue].any() and (fill[-24:, overdue] == 1).all()


def run(options: SimOptions, tmp_path=None):
    sent: list[tuple[str, bytes]] = []

    class Recorder:
        def publish(self, topic: str, payload: bytes) -> None:
            sent.append((topic, payload))

    sim = Simulation(options, truth=tmp_path / "truth.jsonl" if tmp_path else None)
    stats = sim.run(Recorder())
    return sim, stats, sent


ALL_FAULTS = dict(drift=0.01, stuck=0.01, dropout=0.01, spike=0.01, duplicate=0.02, late=0.02, skew=0.01, malformed=0.02)


def test_every_fault_type_is_counted_exactly_as_injected(tmp_path) -> None:
    options = SimOptions(domains=["air", "seawater", "parking", "fire", "garbage"], sensors=20, ticks=60,
                         rate=0, seed=7, faults=ALL_FAULTS, start_ns=parse_ts("2026-05-01T00:00:00Z"))
    sim, stats, sent = run(options, tmp_path)
    counts = stats.summary()["faults"]
    assert all(counts[f] > 0 for f in ALL_FAULTS), counts
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert Counter(f for t in truth for f in t["faults"]) == Counter({k: v for k, v in counts.items() if v})
    # and from the bytes that went out, independently of the simulator's own counters:
    malformed = 0
    spikes = 0
    last_ts: dict[str, int] = {}
    out_of_order = 0
    distinct = list(dict.fromkeys(sent))  # a duplicated message counts once for the other faults
    for topic, payload in distinct:
        try:
            raws = parse("native", payload, route(topic))
        except PayloadError:
            malformed += 1
            continue
        for r in raws:
            lo, hi = domain(route(topic).domain).bounds()
            fields = domain(route(topic).domain).fields
            spikes += any(v > hi[fields.index(k)] for k, v in r.values.items())
            out_of_order += r.ts < last_ts.get(r.sensor_id, 0)
            last_ts[r.sensor_id] = max(r.ts, last_ts.get(r.sensor_id, 0))
    copies = Counter(sent)
    assert malformed == counts["malformed"]
    assert spikes == counts["spike"] - sum(1 for t in truth if "spike" in t["faults"] and "malformed" in t["faults"])
    assert sum(n - 1 for n in copies.values()) == counts["duplicate"]
    assert out_of_order >= counts["late"] - sum(1 for t in truth if "late" in t["faults"] and ({"malformed", "dropout"} & set(t["faults"]))) - 5
    assert len(sent) == stats.messages == len(truth) - counts["dropout"] + counts["duplicate"]


def test_the_same_seed_gives_byte_identical_payloads_and_another_seed_does_not() -> None:
    def options(seed: int) -> SimOptions:
        return SimOptions(domains=["air", "parking", "garbage"], sensors=10, ticks=20, rate=0, seed=seed,
                          faults=ALL_FAULTS, start_ns=parse_ts("2026-05-01T00:00:00Z"))
    _, a, sent_a = run(options(1))
    _, b, sent_b = run(options(1))
    _, c, _ = run(options(2))
    assert sent_a == sent_b and a.digest.hexdigest() == b.digest.hexdigest()
    assert a.digest.hexdigest() != c.digest.hexdigest()


@pytest.mark.parametrize("fmt", ["native", "senml", "ttn", "chirpstack"])
def test_every_format_the_simulator_sends_decodes_back_to_the_same_values(fmt: str) -> None:
    from schemas.batch import validate

    options = SimOptions(domains=["air", "seawater", "parking", "fire", "garbage"], sensors=3, ticks=3, rate=0,
                         seed=3, fmt=fmt, batch=1, start_ns=parse_ts("2026-05-01T00:00:00Z"))
    _, stats, sent = run(options)
    decoded = 0
    for topic, payload in sent:
        info = route(topic)
        result = validate(parse(fmt, payload, info), fmt, now_ns=parse_ts("2026-06-01T00:00:00Z"))
        assert not result.errors, (topic, result.errors)
        decoded += len(result.batch)
    assert decoded == stats.readings
