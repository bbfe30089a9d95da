"""Processor memory over a full open day: `python -m bench.state [--sensors 100,1000] [--domain air]`.

For each size, a local day (yesterday, UTC+8) of N sensors at one reading a minute (N x 1,440
readings, one per record as devices that send one reading a message give, each received when it was
taken; keyed by site as the bridge writes them) goes into a
fresh topic of the stack's Kafka; then one `smartcity process --domains <domain>` drains it into fresh
buckets, and its peak RSS (VmHWM, /proc) is read when its group has committed the end. The issue-20
targets: <= 300 MB at 1,000 sensors, and <= 1.25x the peak at 100 sensors. Results go to
bench/results/state-<date>.json and .md. A bench case, not a timed test: it loads the shared stack.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.harness import Bench, KafkaCounter, load_average
from infra.clients import kafka_producer
from infra.settings import Settings
from schemas.batch import ReadingBatch
from schemas.registry import domain as get_domain
from schemas.sites import sites_for

RESULTS = Path(__file__).with_name("results")
DAY_NS, MINUTE_NS, LOCAL_OFFSET_NS = 86400 * 10**9, 60 * 10**9, 8 * 3600 * 10**9


def day_batch(domain: str, sensors: int, hour: int, seed: int) -> ReadingBatch:
    """One local hour of yesterday for `sensors` sensors over the domain's sites, a reading a minute,
    every field present and plausible (within half of each field's upper bound)."""
    rng = np.random.default_rng(seed + hour)
    sites = [s.id for s in sites_for(domain) if s.kind != "plant"]
    today = (time.time_ns() + LOCAL_OFFSET_NS) // DAY_NS
    start = (today - 1) * DAY_NS - LOCAL_OFFSET_NS + hour * 3600 * 10**9
    ids = np.array([f"m{i:05d}" for i in range(sensors)], dtype=object).repeat(60)
    site = np.array([sites[i % len(sites)] for i in range(sensors)], dtype=object).repeat(60)
    ts = np.tile(start + np.arange(60, dtype=np.int64) * MINUTE_NS, sensors)
    _, high = get_domain(domain).bounds()
    values = rng.random((len(ts), len(high))) * np.where(np.isfinite(high), high, 100.0) * 0.5
    n = len(ts)
    return ReadingBatch(domain, ids, site, ts, values, np.full(n, -1, np.int64), np.full(n, np.nan), np.full(n, np.nan),
                        np.full(n, "native", dtype=object), ts.copy())


def load(settings: Settings, domain: str, sensors: int) -> int:
    """Produce the day, hour by hour; returns the number of records."""
    producer = kafka_producer(settings, linger_ms=20)
    topic, records = settings.kafka.telemetry_topic(domain), 0
    for hour in range(24):
        batch = day_batch(domain, sensors, hour, seed=sensors)
        message_of = np.arange(sensors).repeat(60)
        futures = [producer.send(topic, key=k, value=v, timestamp_ms=t) for k, v, t, _ in batch.records(message_of)]
        producer.flush(120)
        for f in futures:
            f.get(timeout=1)
        records += len(futures)
    producer.close()
    return records


def measure(bench: Bench, domain: str, sensors: int, timeout: float) -> dict:
    """Peak RSS of one processor draining a day of `sensors` sensors."""
    settings = bench.settings(f"st{sensors}", buckets=True)
    started = time.perf_counter()
    records = load(settings, domain, sensors)
    produced_s = time.perf_counter() - started
    group = f"state-{bench.tag}-{sensors}"
    counter = KafkaCounter(settings, [settings.kafka.telemetry_topic(domain)])
    proc = bench.smartcity(f"process-{sensors}", settings, "process", "--domains", domain, "--group", group,
                           "--stale-after", "86400")
    began = time.perf_counter()
    peak, deadline = 0.0, began + timeout
    try:
        while counter.committed(group) < records:
            if not proc.alive() or time.perf_counter() > deadline:
                raise RuntimeError(f"processor for {sensors} sensors stopped or timed out:\n{proc.tail()}")
            peak = max(peak, proc.usage()["peak_rss_mb"] or 0.0)
            time.sleep(0.5)
        usage = proc.usage()
    finally:
        proc.stop()
        counter.close()
    return {"sensors": sensors, "readings": sensors * 1440, "records": records, "produce_s": round(produced_s, 1),
            "drain_s": round(time.perf_counter() - began, 1), "cpu_s": usage["cpu_s"],
            "peak_rss_mb": max(peak, usage["peak_rss_mb"] or 0.0)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", default="100,1000", help="comma-separated sizes (sensors at a reading a minute)")
    parser.add_argument("--domain", default="air")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one drain may take")
    args = parser.parse_args(argv)
    bench = Bench()
    rows, load_start = [], load_average()
    try:
        for n in [int(x) for x in args.sensors.split(",")]:
            rows.append(measure(bench, args.domain, n, args.timeout))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        bench.cleanup()
    low, high = rows[0], rows[-1]
    ratio = high["peak_rss_mb"] / low["peak_rss_mb"] if low["peak_rss_mb"] else float("nan")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    result = {"case": "processor-state", "domain": args.domain, "rows": rows, "ratio": round(ratio, 3),
              "load_average": {"start": load_start, "end": load_average()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"state-{stamp}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Processor memory over a full open day ({args.domain}, {stamp})", "",
             "| sensors | readings | records | drain s | CPU s | peak RSS MB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['sensors']:,} | {r['readings']:,} | {r['records']:,} | {r['drain_s']} | {r['cpu_s']} | "
              f"{r['peak_rss_mb']} |" for r in rows]
    lines += ["", f"Peak at {high['sensors']:,} sensors / peak at {low['sensors']:,}: {ratio:.2f}x "
              f"(targets: <= 300 MB, <= 1.25x). Load average {result['load_average']}."]
    (RESULTS / f"state-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
