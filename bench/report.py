"""The run's results as Markdown: throughput next to Telegraf's, the ratios, and the issue-14 targets."""
from __future__ import annotations

from typing import Any

RSS_LIMIT_MB = 300.0


def _ratio(ours: float | None, peer: float | None) -> float | None:
    return round(ours / peer, 2) if ours and peer else None


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and v < 100:
        return f"{v:,.2f}{unit}"
    return f"{v:,.0f}{unit}" if isinstance(v, (int, float)) else str(v)


def cpu_cost(run: dict) -> float | None:
    """CPU seconds per million readings of a tool run, summed over its processes (two bridges: both)."""
    values = [u.get("cpu_s_per_million_readings") for u in (run.get("usage") or {}).values() if isinstance(u, dict)]
    values = [v for v in values if v]
    return round(sum(values), 1) if values else None


def targets(cases: dict) -> list[dict]:
    """Each target of issue 14 with the measured figure and met / missed (/ not measured)."""
    out: list[dict] = []

    def add(name: str, value: float | None, goal: float, higher: bool = True, note: str = "") -> None:
        state = "not measured" if value is None else ("met" if (value >= goal if higher else value <= goal) else "missed")
        out.append({"target": name, "measured": value, "goal": goal, "state": state, "note": note})

    single = cases.get("mqtt-kafka-single", {}).get("runs", {})
    batch = cases.get("mqtt-kafka-batch", {}).get("runs", {})
    sink = cases.get("kafka-influx", {}).get("runs", {})
    rate = "readings_per_s"
    add("bridge ≥ 1.0× Telegraf, 100-reading messages",
        _ratio(batch.get("bridge x1", {}).get(rate), batch.get("telegraf", {}).get(rate)), 1.0)
    add("bridge ≥ 0.5× Telegraf, single-reading, one bridge",
        _ratio(single.get("bridge x1", {}).get(rate), single.get("telegraf", {}).get(rate)), 0.5)
    add("bridges ≥ 0.8× Telegraf, single-reading, two bridges in one share group",
        _ratio(single.get("bridge x2", {}).get(rate), single.get("telegraf", {}).get(rate)), 0.8)
    add("processor ≥ 1.0× Telegraf Kafka → InfluxDB (with compliance)",
        _ratio(sink.get("smartcity process", {}).get(rate), sink.get("telegraf", {}).get(rate)), 1.0)
    lat = cases.get("latency", {})
    lat = {} if "error" in lat else lat
    note = ""
    achieved = lat.get("achieved_readings_per_s") or lat.get("offered_readings_per_s", 0) if lat else 0
    if lat and (achieved < 0.95 * 5000 or lat.get("seconds", 0) < 300):
        note = (f"offered {lat.get('offered_readings_per_s')} readings/s for {lat.get('seconds')} s, the simulator "
                f"achieved {achieved} (target: 5,000 for 300 s)")
    p99 = lat.get("p99_s") if lat else None
    if lat and p99 is None and lat.get("markers_unseen"):  # some never became queryable: p99 > the longest seen
        p99 = lat.get("max_s")
        note = f"p99 > {p99} s: {lat['markers_unseen']} of {lat['markers']} markers unseen; " + note
    add("p99 publish → queryable ≤ 2 s at 5,000 readings/s", p99, 2.0, higher=False, note=note)
    day = cases.get("processor-day", {})
    add("processor: hour-24 throughput within 20% of hour 1 (last vs first quarter day)",
        day.get("hour24_vs_hour1"), 0.8, note="needs `python -m bench processor-day`" if not day else
        f"{day.get('sensors')} sensors a minute per domain (issue: 200)")
    peak = [(u["peak_rss_mb"], f"{case}/{name}") for case, name, u in processes(cases)
            if not name.startswith("telegraf") and "telegraf" not in name and u.get("peak_rss_mb")]
    worst = max(peak) if peak else (None, "")
    add("≤ 300 MB RSS per process (ours)", worst[0], RSS_LIMIT_MB, higher=False, note=worst[1])
    return out


def processes(cases: dict) -> list[tuple[str, str, dict]]:
    """(case, process, usage) for every measured process of the run."""
    rows = []
    for case, result in cases.items():
        runs = result.get("runs", {"": result})
        for run in runs.values():
            for name, u in (run.get("usage") or {}).items():
                if isinstance(u, dict):
                    rows.append((case, name, u))
    return rows


def _profiles(cases: dict) -> list[str]:
    """Top functions (own time) of each py-spy profile of the run."""
    found = [(f"bridge, {shape} messages", r.get("profile"))
             for shape, r in cases.get("profile-bridge", {}).get("runs", {}).items()]
    found.append(("processor over a day", cases.get("processor-day", {}).get("profile")))
    lines = []
    for label, prof in found:
        if not prof:
            continue
        lines += ["", f"## Profile: {label} (py-spy, {prof['samples']} samples after start-up)", "",
                  "| own time | function | | inclusive | function |", "|---|---|---|---|---|"]
        for a, b in zip(prof["self"][:12], prof["inclusive"][:12]):
            lines.append(f"| {a['share_pct']}% | `{a['function']}` | | {b['share_pct']}% | `{b['function']}` |")
    return lines


def markdown(results: dict) -> str:
    """The whole table set, as printed and as committed under bench/results/."""
    cases, m = results["cases"], results["machine"]
    lines = [f"# Benchmark {results['date']} ({results['git']})", "",
             f"{m['cores']} cores, load average {m['load_start']} at start and {m['load_end']} at end "
             "(a shared machine: compare ratios within one run, not absolute figures across runs; CPU "
             "seconds per reading are the steadiest figure when other work competes for the cores). "
             f"`python -m bench {' '.join(results['argv'])}`", ""]
    lines += ["## Side by side with Telegraf " + results.get("telegraf_version", ""), "",
              "| job | Telegraf | smartcity | ratio | CPU s per million readings, Telegraf / ours |",
              "|---|---|---|---|---|"]
    for case, label in (("mqtt-kafka-single", "MQTT → Kafka, single-reading messages"),
                        ("mqtt-kafka-batch", "MQTT → Kafka, 100-reading messages"),
                        ("kafka-influx", "Kafka → InfluxDB (ours also computes compliance)")):
        runs = cases.get(case, {}).get("runs", {})
        if "error" in cases.get(case, {}):
            lines.append(f"| {label} | error: {cases[case]['error'][:120]} | | |")
        peer = runs.get("telegraf", {})
        for tool, run in runs.items():
            if run.get("stalled"):
                lines.append(f"| {label}: {tool} stalled at {run['records']:,} of {run['readings']:,} readings "
                             f"after {run['seconds_to_last_record']} s ({_fmt(run['readings_per_s_before_stall'])} "
                             "readings/s until then) | | | |")
        for tool, run in runs.items():
            if tool == "telegraf":
                continue
            unit = " msg/s" if case != "kafka-influx" else " readings/s"
            key = "msg_per_s" if case != "kafka-influx" else "readings_per_s"
            ours, theirs = run.get(key), peer.get(key)
            extra = f" ({_fmt(run.get('readings_per_s'))} readings/s)" if case == "mqtt-kafka-batch" else ""
            peer_extra = f" ({_fmt(peer.get('readings_per_s'))} readings/s)" if case == "mqtt-kafka-batch" else ""
            lines.append(f"| {label}: {tool} | {_fmt(theirs, unit)}{peer_extra} | {_fmt(ours, unit)}{extra} | "
                         f"{_fmt(_ratio(ours, theirs), '×')} | {_fmt(cpu_cost(peer))} / {_fmt(cpu_cost(run))} |")
    lines += ["", "## Targets (issue 14)", "", "| target | measured | state | note |", "|---|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {_fmt(t['measured'])} | **{t['state']}** | {t['note']} |")
    comp = cases.get("components", {})
    if comp and "error" not in comp:
        mq, kf, ix = comp.get("mosquitto", {}), comp.get("kafka", {}), comp.get("influxdb", {})
        km = comp.get("kafka_per_message_records", {})
        lines += ["", "## Each component alone (the practical limit)", "", "| component | figure |", "|---|---|",
                  f"| Mosquitto QoS 1 publish (paho, acknowledged) | {_fmt(mq.get('publish_msg_per_s'), ' msg/s')} |",
                  f"| Mosquitto QoS 1 publish + subscribe at once | {_fmt(mq.get('pubsub_msg_per_s'), ' msg/s')} |",
                  f"| Kafka produce, kafka-python, acks=all, idempotent, {kf.get('record_bytes')} B records | "
                  f"{_fmt(kf.get('produce_records_per_s'), ' records/s')} |",
                  f"| Kafka consume, kafka-python | {_fmt(kf.get('consume_records_per_s'), ' records/s')} |",
                  f"| Kafka produce, one {km.get('record_bytes')} B record per 100-reading message | "
                  f"{_fmt(km.get('produce_records_per_s'), ' records/s')} |",
                  f"| InfluxDB synchronous writes, {ix.get('batch')} lines per batch | "
                  f"{_fmt(ix.get('points_per_s'), ' points/s')} |"]
    lat = cases.get("latency", {})
    if lat and "error" not in lat:
        use = lat.get("usage", {})
        lines += ["", "## Publish → queryable latency (bridge + processor)", "",
                  "| offered | p50 | p95 | p99 | max | markers unseen | processor lag at load end | "
                  "peak RSS bridge / processor |", "|---|---|---|---|---|---|---|---|",
                  f"| {_fmt(lat.get('offered_readings_per_s'))} readings/s for {lat.get('seconds')} s "
                  f"(achieved {_fmt(lat.get('achieved_readings_per_s'))}) | "
                  f"{_fmt(lat.get('p50_s'), ' s')} | {_fmt(lat.get('p95_s'), ' s')} | {_fmt(lat.get('p99_s'), ' s')} | "
                  f"{_fmt(lat.get('max_s'), ' s')} | {lat.get('markers_unseen')} of {lat.get('markers')} | "
                  f"{_fmt(lat.get('processor_lag_records_at_load_end'))} records | "
                  f"{_fmt(use.get('lat-bridge', {}).get('peak_rss_mb'))} / "
                  f"{_fmt(use.get('lat-process', {}).get('peak_rss_mb'))} MB |"]
    day = cases.get("processor-day", {})
    if day and "error" not in day:
        lines += ["", "## Processor over a simulated day", "",
                  f"{day.get('readings'):,} readings ({day.get('sensors')} {day.get('domains')} sensors a minute); "
                  f"first six hours: {_fmt(day.get('first_quarter_readings_per_s'), ' readings/s')}, last six: "
                  f"{_fmt(day.get('last_quarter_readings_per_s'), ' readings/s')} "
                  f"(ratio {_fmt(day.get('hour24_vs_hour1'))}); whole day {_fmt(day.get('readings_per_s'), ' readings/s')}; "
                  "per hour: " + ", ".join("–" if h is None else f"{h:,}" for h in day.get("hourly_readings_per_s") or [])
                  + "."]
    lines += _profiles(cases)
    if any(c in cases for c in ("mqtt-kafka-single", "kafka-influx", "processor-day")):
        from bench import sizing  # imports this module: imported here, not at the top

        lines += ["", "## Sizing from these costs (see docs/performance.md)", "", sizing.markdown(results).rstrip()]
    rows = processes(cases)
    if rows:
        lines += ["", "## CPU and memory per process", "",
                  "| case | process | CPU s | CPU s per million readings | peak RSS MB |", "|---|---|---|---|---|"]
        for case, name, u in rows:
            lines.append(f"| {case} | {name} | {_fmt(u.get('cpu_s'))} | {_fmt(u.get('cpu_s_per_million_readings'))} | "
                         f"{_fmt(u.get('peak_rss_mb'))} |")
    errors = [(c, r["error"]) for c, r in cases.items() if "error" in r]
    if errors:
        lines += ["", "## Errors", ""] + [f"- `{c}`: {e}" for c, e in errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Re-render a results JSON as Markdown (beside it, and as latest.md): `python -m bench.report FILE`."""
    import json
    from pathlib import Path

    path = Path(argv[0])
    results = json.loads(path.read_text())
    results["targets"] = targets(results["cases"])
    text = markdown(results)
    path.with_suffix(".md").write_text(text)
    path.with_name("latest.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
