"""Micro cases (`python -m bench decode generate publish kernels`): in-process figures, best of a few
repeats, one core. They call internals, so they follow the code they measure; the pipeline cases
(bench/pipeline.py) use only the public commands."""
from __future__ import annotations

import json
import time
import uuid
from typing import Callable

import numpy as np

from schemas.adapters import parse, route
from schemas.batch import ReadingBatch, validate
from simulators.engine import MODELS, NullSink, SimOptions, Simulation


def best(fn: Callable[[], int], repeats: int = 3) -> tuple[float, int]:
    """(best seconds, items) over `repeats` runs of fn, which returns how many items it handled."""
    times, items = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        items = fn()
        times.append(time.perf_counter() - t)
    return min(times), items


def _native(n: int) -> bytes:
    return json.dumps([{"ts": 1_790_000_000 + i, "seq": i, "values": {"pm25": 30.5 + i % 40, "pm10": 61.0, "no2": 33.0,
                                                                      "so2": 8.0, "co": 0.6, "o3": 80.0}}
                       for i in range(n)]).encode()


def decode() -> dict:
    """Decode + validate: one 10,000-reading native array; 10,000 single-reading messages; SenML."""
    info = route("city/air/station-1/pm-1/up")
    array = _native(10_000)
    singles = [_native(1).replace(b"1790000000", str(1_790_000_000 + i).encode()) for i in range(10_000)]

    def run_array() -> int:
        return len(validate(parse("native", array, info), "native").batch)

    def run_singles() -> int:
        return sum(len(validate(parse("native", m, info), "native").batch) for m in singles)

    def run_singles_batched() -> int:
        # the bridge's path: parse each message, validate the whole poll batch at once
        from schemas.batch import MessageReadings, validate_many

        result = validate_many([MessageReadings(parse("native", m, info), "native") for m in singles])
        return sum(len(b) for b, _ in result.batches.values())

    def run_records() -> int:
        batch = validate(parse("native", array, info), "native").batch
        return len(list(batch.records()))

    senml = json.dumps([{"bn": "s1/", "bt": 1_790_000_000, "n": "pm25", "v": 30}] +
                       [{"n": "pm25", "t": i, "v": 30 + i % 9} for i in range(1, 5000)]).encode()
    senml_info = route("city/air/station-1/s1/senml")
    a, n_a = best(run_array)
    s, n_s = best(run_singles)
    sb, n_sb = best(run_singles_batched)
    r, n_r = best(run_records)
    m, n_m = best(lambda: len(validate(parse("senml", senml, senml_info), "senml").batch))
    processors_side = [v for _, v, _, _ in validate(parse("native", array, info), "native").batch.records()]
    k, n_k = best(lambda: len(ReadingBatch.from_records("air", processors_side)[0]))
    return {"native_array_readings_per_s": n_a / a, "native_single_messages_per_s": n_s / s,
            "native_single_messages_validated_together_per_s": n_sb / sb,
            "kafka_record_encode_per_s": n_r / r, "senml_readings_per_s": n_m / m,
            "kafka_record_decode_to_columns_per_s": n_k / k}


def generate() -> dict:
    """Simulator generation + encoding without a broker (all five domains)."""
    opts = SimOptions(domains=list(MODELS), sensors=100, ticks=50, rate=0, seed=1, start_ns=1_790_000_000 * 10**9)
    t, stats = best(lambda: Simulation(opts).run(NullSink()).readings, repeats=2)
    batched = SimOptions(**{**opts.__dict__, "batch": 50})
    tb, nb = best(lambda: Simulation(batched).run(NullSink()).readings, repeats=2)
    return {"readings_per_s_single": stats / t, "readings_per_s_batch50": nb / tb}


def publish() -> dict:
    """Achieved publish rate to the real Mosquitto (QoS 1, acknowledged), single and batched messages."""
    from infra.settings import get_settings
    from simulators.publisher import Publisher

    out = {}
    for batch in (1, 50):
        opts = SimOptions(domains=list(MODELS), sensors=100, ticks=100 if batch == 1 else 500, rate=0, seed=1,
                          batch=batch, start_ns=1_790_000_000 * 10**9)
        pub = Publisher(get_settings(), client_prefix=f"bench-{uuid.uuid4().hex[:4]}")
        started = time.perf_counter()
        stats = Simulation(opts).run(pub)
        pub.wait(300)
        elapsed = time.perf_counter() - started
        pub.close()
        out[f"batch{batch}_messages_per_s"] = stats.messages / elapsed
        out[f"batch{batch}_readings_per_s"] = stats.readings / elapsed
    return out


def kernels() -> dict:
    """Processor kernels per core: a day of air at 100 sensors/min through the plug-in; IAQI; FWI; raw lines."""
    from processors.air import AirProcessor, iaqi
    from processors.fire import fwi_daily
    from processors.history import FluxHistory
    from processors.service import raw_lines
    from schemas.thresholds import load_plan
    from simulators.base import Sensors

    sensors = Sensors.place("air", 100)
    model = MODELS["air"](sensors, np.random.default_rng(1))
    start = 1_790_000_000 * 10**9
    rows = [model.step(start + k * 60 * 10**9, 60.0) for k in range(1440)]
    n = len(sensors) * len(rows)
    batch = ReadingBatch(
        domain="air", sensor_id=np.tile(sensors.ids, len(rows)), site=np.tile(sensors.site, len(rows)),
        ts=np.repeat(start + np.arange(len(rows), dtype=np.int64) * 60 * 10**9, len(sensors)),
        values=np.vstack(rows), seq=np.full(n, -1), lat=np.full(n, np.nan), lon=np.full(n, np.nan),
        source=np.full(n, "native", dtype=object), received_at=np.zeros(n, np.int64))
    plugin = AirProcessor(load_plan(), FluxHistory(lambda flux: [], "compliance"))
    days = np.unique((batch.ts + 8 * 3600 * 10**9) // (86400 * 10**9))
    t_air, _ = best(lambda: len(plugin.compute(batch, days).points), repeats=2)
    conc = np.random.default_rng(2).uniform(0, 600, 1_000_000)
    t_iaqi, _ = best(lambda: len(iaqi("PM25_24H", conc, at=start)))
    days_fwi, stations = 365, 1000
    w = np.random.default_rng(3)
    args = (w.uniform(0, 30, (days_fwi, stations)), w.uniform(10, 100, (days_fwi, stations)),
            w.uniform(0, 40, (days_fwi, stations)), w.exponential(2, (days_fwi, stations)), np.full(days_fwi, 5))
    t_fwi, _ = best(lambda: len(fwi_daily(*args).fwi))
    t_lines, _ = best(lambda: len(raw_lines(batch.take(np.arange(50_000)))))
    return {"air_plugin_readings_per_s": n / t_air, "iaqi_values_per_s": 1_000_000 / t_iaqi,
            "fwi_station_days_per_s": days_fwi * stations / t_fwi, "raw_line_protocol_per_s": 50_000 / t_lines}


def adversarial() -> dict:
    """Decoding adversarial payloads (bench/adversarial.py, every format and profile): time per KiB at
    the broker's 256 KiB limit, and how it grows from 64 KiB for those taking over 5 ms (4x the bytes:
    about 4x for a linear step, 16x for a quadratic one)."""
    from bench.adversarial import BROKER_LIMIT, decode_seconds, payloads, profiles

    devices = profiles()
    per_kib, growth = {}, []
    small = {p.name: p for p in payloads(BROKER_LIMIT // 4)}
    for p in payloads(BROKER_LIMIT):
        big, _ = best(lambda p=p: decode_seconds(p, devices)[0] and 1)
        little, _ = best(lambda p=small[p.name]: decode_seconds(p, devices)[0] and 1)
        per_kib[p.name] = big * 1000 / ((len(p.topic) + len(p.body)) / 1024)
        if big > 0.005:  # below that, timer noise and start-up costs, not growth
            growth.append(big / little)
    worst = max(per_kib, key=per_kib.__getitem__)
    return {"payloads": len(per_kib), "worst_ms_per_kib": per_kib[worst], "worst_family": worst,
            "median_ms_per_kib": float(np.median(list(per_kib.values()))),
            "worst_growth_64_to_256_kib": max(growth, default=0.0),
            "median_growth_64_to_256_kib": float(np.median(growth)) if growth else 0.0}
