"""Prototypes that estimate what a change would buy (`python -m bench prototypes`), in-process, one core.

Not the pipeline's code: sketches of the directions in docs/performance.md, timed against today's
functions on the same columns, so that the estimate there rests on a measurement. They follow the
internals they compare with (processors.service.raw_lines, ReadingBatch.records).
"""
from __future__ import annotations

import json
import time
from typing import Callable

import numpy as np

from infra.lineprotocol import escape
from schemas.batch import ReadingBatch
from simulators.engine import MODELS


def _best(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _air_batch(rows: int = 50_000) -> ReadingBatch:
    """`rows` air readings (200 sensors, one a minute) as the processor holds them after decoding."""
    from simulators.base import Sensors

    sensors = Sensors.place("air", 200)
    model = MODELS["air"](sensors, np.random.default_rng(1))
    start = 1_790_000_000 * 10**9
    ticks = rows // len(sensors)
    values = np.vstack([model.step(start + k * 60 * 10**9, 60.0) for k in range(ticks)])
    n = len(values)
    return ReadingBatch(
        domain="air", sensor_id=np.tile(sensors.ids, ticks), site=np.tile(sensors.site, ticks),
        ts=np.repeat(start + np.arange(ticks, dtype=np.int64) * 60 * 10**9, len(sensors)), values=values,
        seq=np.full(n, -1), lat=np.full(n, np.nan), lon=np.full(n, np.nan),
        source=np.full(n, "native", dtype=object), received_at=np.zeros(n, np.int64))


def columnar_lines(batch: ReadingBatch) -> list[str]:
    """Line protocol built column by column: tags escaped once per distinct value, each field column
    formatted in one pass, rows joined with zip (no per-row index arithmetic, no np.flatnonzero per row)."""
    sensor = {s: escape(s) for s in set(batch.sensor_id.tolist())}
    site = {s: escape(s) for s in set(batch.site.tolist())}
    prefix = [f"{batch.domain},sensor={sensor[a]},site={site[b]},source={c} "
              for a, b, c in zip(batch.sensor_id.tolist(), batch.site.tolist(), batch.source.tolist())]
    columns = []
    for j, name in enumerate(batch.fields):
        col = batch.values[:, j]
        present = ~np.isnan(col)
        texts = [f"{name}={v!r}" for v in col.tolist()]
        if not present.all():
            texts = [t if p else "" for t, p in zip(texts, present.tolist())]
        columns.append(texts)
    ts = batch.ts.tolist()
    return [f"{p}{','.join(filter(None, fields))} {t}" for p, t, *fields in zip(prefix, ts, *columns)]


def compact_records(batch: ReadingBatch, per: int = 100) -> list[bytes]:
    """One Kafka record per `per` readings of a sensor: columns, no nulls, names once."""
    out = []
    values = batch.values
    for i in range(0, len(batch), per):
        block = values[i:i + per]
        keep = ~np.isnan(block).all(axis=0)
        out.append(json.dumps({"sensor_id": batch.sensor_id[i], "site": batch.site[i], "domain": batch.domain,
                               "ts": batch.ts[i:i + per].tolist(),
                               "values": {n: block[:, j].tolist() for j, n in enumerate(batch.fields) if keep[j]}},
                              separators=(",", ":")).encode())
    return out


def prototypes() -> dict:
    """Today's raw line protocol and per-reading records against the columnar / compact sketches."""
    from processors.service import raw_lines

    batch = _air_batch()
    n = len(batch)
    assert sorted(columnar_lines(batch.take(np.arange(1000)))) == sorted(raw_lines(batch.take(np.arange(1000))))
    t_rows, t_cols = _best(lambda: raw_lines(batch)), _best(lambda: columnar_lines(batch))
    t_rec = _best(lambda: list(batch.records()))
    t_compact = _best(lambda: compact_records(batch))
    per_reading = list(batch.records())
    compact = compact_records(batch)
    return {"readings": n,
            "raw_lines_per_s": round(n / t_rows), "columnar_lines_per_s": round(n / t_cols),
            "line_protocol_speedup": round(t_rows / t_cols, 2),
            "per_reading_records_per_s": round(n / t_rec), "compact_records_readings_per_s": round(n / t_compact),
            "record_encode_speedup": round(t_rec / t_compact, 2),
            "bytes_per_reading_today": round(sum(len(v) for _, v in per_reading) / n, 1),
            "bytes_per_reading_compact": round(sum(map(len, compact)) / n, 1)}
