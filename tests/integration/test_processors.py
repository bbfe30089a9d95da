"""Processors end to end: a simulated day through the real bridge, Kafka and InfluxDB, checked against
the simulator's ground truth; and a processor killed mid-stream ends with the same compliance bucket."""
from __future__ import annotations

import math
import time
from collections import defaultdict

import numpy as np
import pytest

from infra.settings import Settings
from processors.fire import fwi_daily
from schemas.sites import expected_sites
from tests.conftest import DAY_START
from tests.helpers import flux_rows

pytestmark = pytest.mark.integration

def compliance_snapshot(settings: Settings) -> list[tuple]:
    """Every computed point (not the wall-clock ones: pipeline metrics, sensor status, and the router's alert
    history and times, which only A's bucket receives)."""
    rows = flux_rows(settings, settings.influx.bucket_compliance,
                     'r._measurement != "pipeline" and r._measurement != "sensor_status" and r._measurement != "alerts"'
                     ' and r._measurement != "alert_times"')
    return sorted((r["_measurement"], tuple(sorted((k, v) for k, v in r.items() if not k.startswith("_")
                   and k not in ("result", "table"))), r["_field"], str(r["_time"]),
                   round(r["_value"], 9) if isinstance(r["_value"], float) else r["_value"]) for r in rows)


# -- ground truth, computed here from what the simulator sent, without the processors' code paths ----

HJ633 = {  # concentration breakpoints per item, IAQI 0,50,100,150,200,300,400,500
    "pm25": [0, 35, 75, 115, 150, 250, 350, 500], "pm10": [0, 50, 150, 250, 350, 420, 500, 600],
    "so2": [0, 150, 500, 650, 800], "no2": [0, 100, 200, 700, 1200, 2340, 3090, 3840],
    "co": [0, 5, 10, 35, 60, 90, 120, 150], "o3": [0, 160, 200, 300, 400, 800, 1000, 1200],
}
IAQI = [0, 50, 100, 150, 200, 300, 400, 500]


def reference_iaqi(item: str, c: float) -> float:
    bp = HJ633[item]
    for k in range(1, len(bp)):
        if c <= bp[k]:
            return math.ceil(round((IAQI[k] - IAQI[k - 1]) / (bp[k] - bp[k - 1]) * (c - bp[k - 1]) + IAQI[k - 1], 9))
    return float("nan") if item == "so2" else 500


def reference_class(m: dict) -> int:
    worst = 1
    limits = {"cod": [2, 3, 4, 5], "inorganic_nitrogen": [0.2, 0.3, 0.4, 0.5], "phosphate": [0.015, 0.03, 0.03, 0.045],
              "petroleum": [0.05, 0.05, 0.3, 0.5]}
    for name, lim in limits.items():
        worst = max(worst, next((k + 1 for k, v in enumerate(lim) if m[name] <= v), 5))
    worst = max(worst, next((k + 1 for k, v in enumerate([6, 5, 4, 3]) if m["dissolved_oxygen"] > v), 5))
    ph_ok = [(7.8, 8.5), (7.8, 8.5), (6.8, 8.8), (6.8, 8.8)]
    return max(worst, next((k + 1 for k, (lo, hi) in enumerate(ph_ok) if lo <= m["ph"] <= hi), 5))


def means_by(truth: list[dict], domain: str, key) -> dict:  # noqa: ANN001
    acc: dict = defaultdict(lambda: defaultdict(list))
    for t in truth:
        if t["domain"] == domain:
            for name, v in t["values"].items():
                acc[key(t)][name].append(v)
    return {k: {n: sum(v) / len(v) for n, v in fields.items()} for k, fields in acc.items()}


def stored(settings: Settings, measurement: str) -> dict:
    out: dict = defaultdict(dict)
    for r in flux_rows(settings, settings.influx.bucket_compliance, f'r._measurement == "{measurement}"'):
        key = (r.get("site") or r.get("scope"), int(r["_time"].timestamp()))
        out[key][r["_field"]] = r["_value"]
    return out


def indicator(settings: Settings, domain: str, name: str) -> dict:
    rows = flux_rows(settings, settings.influx.bucket_compliance,
                     f'r._measurement == "indicator" and r.domain == "{domain}" and r.indicator == "{name}" and r._field == "value"')
    return {(r["scope"], int(r["_time"].timestamp())): r["_value"] for r in rows}


def fields_of(settings: Settings, domain: str, name: str, scope: str, ts: int) -> dict:
    rows = flux_rows(settings, settings.influx.bucket_compliance,
                     f'r._measurement == "indicator" and r.domain == "{domain}" and r.indicator == "{name}" '
                     f'and r.scope == "{scope}"')
    return {r["_field"]: r["_value"] for r in rows if int(r["_time"].timestamp()) == ts}


def test_every_indicator_matches_the_simulators_ground_truth(pipeline_day) -> None:  # noqa: ANN001
    a, _, truth = pipeline_day
    hour = lambda t: (t["site"], t["ts"] // 10**9 // 3600 * 3600)  # noqa: E731
    day = DAY_START
    # air: hourly means and AQI per station; daily PM2.5; year-to-date
    air_hourly = stored(a, "air_hourly")
    expected = means_by(truth, "air", hour)
    assert set(air_hourly) == set(expected)
    for key, m in expected.items():
        got = air_hourly[key]
        for p in ("pm25", "pm10", "so2", "no2", "co", "o3"):
            assert got[p] == pytest.approx(m[p], abs=1e-3), (key, p)
        assert got["aqi"] == max(reference_iaqi(p, m[p]) for p in HJ633), key
    daily = {k[0]: sum(v["pm25"] for (s, _), v in expected.items() if s == k[0]) / 24 for k in expected}
    air_daily = stored(a, "air_daily")
    for site, mean in daily.items():
        assert air_daily[(site, day)]["pm25"] == pytest.approx(mean, abs=1e-3)
    ytd = indicator(a, "air", "pm25_ytd")
    district = sum(daily.values()) / len(daily)
    assert ytd[("district", day)] == pytest.approx(district, abs=1e-3)
    # "will we make it?": one valid day so far (the buckets are fresh), the rest of the year to go
    outlook = fields_of(a, "air", "pm25_ytd", "district", day)
    local = time.gmtime(day + 8 * 3600)
    days_in_year = 366 if local.tm_year % 4 == 0 else 365
    remaining = days_in_year - local.tm_yday
    assert outlook["remaining_days"] == remaining and outlook["target"] == 35.0
    assert outlook["required_rest"] == pytest.approx((35.0 * (1 + remaining) - district) / remaining, abs=1e-3)
    assert outlook["projection"] == pytest.approx(district, abs=1e-3) and outlook["seasonal"] == 0
    # seawater: daily class per buoy (worst factor) and the district's class I-II share
    water = means_by(truth, "seawater", lambda t: t["site"])
    classes = {site: reference_class(m) for site, m in water.items()}
    water_daily = stored(a, "seawater_daily")
    assert {s: water_daily[(s, day)]["water_class"] for s in classes} == classes
    assert indicator(a, "seawater", "good_share")[("district", day)] == pytest.approx(
        sum(c <= 2 for c in classes.values()) / len(classes))
    # parking: hourly mean occupancy per lot, networked rate
    lots = means_by(truth, "parking", hour)
    parking = stored(a, "parking_hourly")
    for key, m in lots.items():
        assert parking[key]["occupancy"] == pytest.approx(m["occupied"] / m["capacity"], abs=1e-4), key
    # networked management counts every registered lot: the simulator runs 5 sensors over the 7 lots
    registered = len(expected_sites("parking"))
    assert set(indicator(a, "parking", "networked_rate").values()) == {len({k[0] for k in lots}) / registered}
    # spaces added: the shipped registry has no baseline, so no value, only the "baseline not set" state
    assert indicator(a, "parking", "spaces_added") == {}
    spaces = flux_rows(a, a.influx.bucket_compliance,
                       'r._measurement == "indicator" and r.indicator == "spaces_added" and r._field == "baseline_set"')
    assert spaces and {r["_value"] for r in spaces} == {0}
    # fire: the day's FWI per zone from the observation nearest local noon, from the start-up codes
    noon = day + 12 * 3600
    fire = stored(a, "fire_daily")
    zones = {t["site"] for t in truth if t["domain"] == "fire"}
    for zone in zones:
        obs = min((t for t in truth if t["domain"] == "fire" and t["site"] == zone),
                  key=lambda t: abs(t["ts"] // 10**9 - noon))
        v = obs["values"]
        month = int(time.strftime("%m", time.gmtime(day + 8 * 3600)))
        codes = fwi_daily(np.array([v["temperature"]]), np.array([v["humidity"]]), np.array([v["wind_speed"]]),
                          np.array([v["rain_24h"]]), np.array([month]))
        assert fire[(zone, day)]["fwi"] == pytest.approx(float(codes.fwi[0]), abs=1e-3), zone
    # garbage: the plant's report gives the rates
    plant = [t["values"] for t in truth if t["domain"] == "garbage" and "harmless_kg" in t["values"]]
    assert len(plant) == 1
    p = plant[0]
    generated = p["recyclable_kg"] + p["hazardous_kg"] + p["kitchen_kg"] + p["residual_kg"]
    assert indicator(a, "garbage", "recycling_rate")[("district", day)] == pytest.approx(
        (p["recovered_kg"] + p["kitchen_resource_kg"]) / generated, rel=1e-6)
    assert indicator(a, "garbage", "harmless_rate")[("district", day)] == pytest.approx(p["harmless_kg"] / generated, rel=1e-6)
    recycled = (p["recovered_kg"] + p["kitchen_resource_kg"]) / generated
    assert indicator(a, "garbage", "recycling_rate_ytd")[("district", day)] == pytest.approx(recycled, rel=1e-6)
    assert 0 <= indicator(a, "garbage", "collection_rate")[("district", day)] <= 1
    # fire: every registered zone reported, so coverage is complete; seawater's year so far
    assert indicator(a, "fire", "zones_covered")[("district", day)] == len(zones) / len(expected_sites("fire"))
    assert indicator(a, "seawater", "good_share_ytd")[("district", day)] == pytest.approx(
        sum(c <= 2 for c in classes.values()) / len(classes))


def test_a_processor_killed_mid_stream_ends_with_the_same_compliance_bucket(pipeline_day) -> None:  # noqa: ANN001
    a, b, _ = pipeline_day
    snapshot_a, snapshot_b = compliance_snapshot(a), compliance_snapshot(b)
    assert len(snapshot_a) > 1000
    assert snapshot_a == snapshot_b
