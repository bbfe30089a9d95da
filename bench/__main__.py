"""Run the benchmarks: `python -m bench` (the issue-14 set) or `python -m bench CASE ...`.

Results go to bench/results/<date>.json and <date>.md (and latest.md, which the README links to).
Pipeline cases need the stack (make stack) and build Telegraf the first time (deploy/native/telegraf.sh).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).with_name("results")
DEFAULT = ["components", "mqtt-kafka-single", "mqtt-kafka-batch", "kafka-influx", "latency", "processor-day"]


class Run:
    """State shared by the cases of one run: the bench environment, the messages, earlier results."""

    def __init__(self, args: argparse.Namespace) -> None:
        from bench.harness import Bench

        self.args = args
        self.bench = Bench()
        self.messages: dict[str, object] = {}
        self.results: dict[str, dict] = {}
        self.batch_source: dict[str, object] = {}  # tool -> settings whose topics hold its 100-reading drain

    def msgs(self, shape: str):  # noqa: ANN201 - bench.pipeline.Messages
        from bench.pipeline import generate

        if shape not in self.messages:
            a = self.args
            n, per = (a.messages, 1) if shape == "single" else (a.batch_messages, a.per_message)
            started = time.perf_counter()
            self.messages[shape] = generate(shape, n, per, seed=a.seed)
            print(f"  generated {n:,} {shape} messages in {time.perf_counter() - started:.1f} s", flush=True)
        return self.messages[shape]

    def telegraf(self) -> str:
        from bench import telegraf

        if not getattr(self.bench, "telegraf", None):
            self.bench.telegraf = telegraf.binary()
        return self.bench.telegraf


def _runs(run: Run, shape: str, tools: list[tuple[str, int]]) -> dict:
    from bench.pipeline import drain

    msgs = run.msgs(shape)
    out: dict = {"messages": len(msgs.items), "readings": msgs.readings, "runs": {}}
    for tool, count in tools:
        if tool == "telegraf":
            run.telegraf()
        print(f"  {tool} x{count} ...", flush=True)
        try:
            result = drain(run.bench, msgs, tool, count, timeout=run.args.timeout, stall=run.args.stall)
        except Exception as exc:  # noqa: BLE001 - keep the other tools' figures
            traceback.print_exc()
            out["runs"][f"{tool} x{count}"] = {"error": f"{type(exc).__name__}: {exc}"[:2000], "usage": {}}
            continue
        settings = result.pop("settings")
        if shape == "batch" and count == 1 and result.get("seconds") is not None:
            run.batch_source[tool] = settings
        out["runs"][result["tool"]] = result
        print(f"    {_line(result)}", flush=True)
    return out


def _line(r: dict) -> str:
    if "error" in r:
        return f"ERROR {r['error'][:300]}"
    usage = ", ".join(f"{n}: {u.get('cpu_s')} CPU s, {u.get('peak_rss_mb')} MB" for n, u in r["usage"].items()
                      if isinstance(u, dict))
    if r.get("seconds") is None:
        return f"FAILED after {r.get('records', r.get('committed'))} records: {r['usage'].get('error')}"
    return f"{r['seconds']} s, {r.get('msg_per_s', '-')} msg/s, {r['readings_per_s']} readings/s; {usage}"


def case_components(run: Run) -> dict:
    from bench.pipeline import influx_alone, kafka_alone, mosquitto_alone

    msgs = run.msgs("single")
    sample = msgs.items[: min(len(msgs.items), run.args.component_messages)]
    part = type(msgs)(msgs.shape, sample, len(sample), msgs.field, 0, len(sample))
    batch = run.msgs("batch")
    return {"mosquitto": mosquitto_alone(run.bench, part),
            "kafka": kafka_alone(run.bench, run.args.kafka_records, _bridge_record(*msgs.items[0])),
            "kafka_per_message_records": kafka_alone(run.bench, run.args.kafka_records // 50,
                                                     _bridge_record(*batch.items[0]), "kafkam"),
            "influxdb": influx_alone(run.bench, run.msgs("batch"), run.args.influx_points)}


def _bridge_record(topic: str, payload: bytes) -> bytes:
    """The Kafka record the bridge makes of one native message (one sensor's readings as columns)."""
    from schemas.adapters import parse, route
    from schemas.batch import validate

    batch = validate(parse("native", payload, route(topic)), "native").batch
    assert batch is not None, f"the bench's own message was refused: {topic}"
    return next(batch.records())[1]


def case_single(run: Run) -> dict:
    return _runs(run, "single", [("telegraf", 1), ("bridge", 1), ("bridge", 2)])


def case_batch(run: Run) -> dict:
    return _runs(run, "batch", [("telegraf", 1), ("bridge", 1)])


def case_kafka_influx(run: Run) -> dict:
    from bench.pipeline import sink

    missing = [(tool, 1) for tool in ("telegraf", "bridge") if tool not in run.batch_source]
    if missing:
        print(f"  (filling Kafka with the 100-reading drain of {', '.join(t for t, _ in missing)} first)", flush=True)
        run.results.setdefault("mqtt-kafka-batch", {"runs": {}})["runs"].update(_runs(run, "batch", missing)["runs"])
    if len(run.batch_source) < 2:
        raise RuntimeError("a 100-reading drain did not complete, so Kafka does not hold the whole input; see "
                           "the mqtt-kafka-batch error and rerun with a larger --stall or --timeout")
    run.telegraf()
    out: dict = {"runs": {}}
    for tool in ("telegraf", "process"):
        print(f"  {tool} ...", flush=True)
        try:
            result = sink(run.bench, run.batch_source["telegraf" if tool == "telegraf" else "bridge"],
                          run.msgs("batch"), tool, timeout=run.args.timeout,
                          stall=run.args.stall)
        except Exception as exc:  # noqa: BLE001 - keep the other tool's figures
            traceback.print_exc()
            out["runs"][tool] = {"error": f"{type(exc).__name__}: {exc}"[:2000], "usage": {}}
            continue
        out["runs"][result["tool"]] = result
        print(f"    {_line(result)}; points {result['points_checked']}", flush=True)
    return out


def case_latency(run: Run) -> dict:
    from bench.pipeline import latency

    return latency(run.bench, run.args.latency_rate, run.args.latency_seconds, profile=run.args.profile)


def case_processor_day(run: Run) -> dict:
    from bench.profile import processor_day

    return processor_day(run.bench, run.args)


def case_profile_bridge(run: Run) -> dict:
    from bench.profile import profile_bridge

    return profile_bridge(run.bench, run.msgs("single"), run.msgs("batch"), run.args)


def _micro(name: str) -> Callable[[Run], dict]:
    def case(run: Run) -> dict:
        from bench import cases

        return getattr(cases, name)()
    return case


CASES: dict[str, Callable[[Run], dict]] = {
    "components": case_components, "mqtt-kafka-single": case_single, "mqtt-kafka-batch": case_batch,
    "kafka-influx": case_kafka_influx, "latency": case_latency, "processor-day": case_processor_day,
    "profile-bridge": case_profile_bridge,
    **{name: _micro(name) for name in ("decode", "generate", "publish", "kernels", "adversarial")},
}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="*", help=f"cases to run (default: {' '.join(DEFAULT)}); known: {', '.join(CASES)}")
    p.add_argument("--messages", type=int, default=50_000, help="single-reading messages pre-queued (default 50,000)")
    p.add_argument("--batch-messages", type=int, default=2_000, help="multi-reading messages pre-queued (default 2,000)")
    p.add_argument("--per-message", type=int, default=100, help="readings per multi-reading message (default 100)")
    p.add_argument("--component-messages", type=int, default=20_000, help="messages for Mosquitto alone")
    p.add_argument("--kafka-records", type=int, default=100_000, help="records for Kafka alone")
    p.add_argument("--influx-points", type=int, default=100_000, help="points for InfluxDB alone")
    p.add_argument("--latency-rate", type=int, default=5_000, help="offered readings/s in the latency case")
    p.add_argument("--latency-seconds", type=int, default=300, help="seconds of load in the latency case (the issue's 300)")
    p.add_argument("--day-sensors", type=int, default=200, help="processor-day: sensors per domain, one reading a minute")
    p.add_argument("--day-domains", default="all", help="processor-day: comma-separated domains, or all")
    p.add_argument("--profile", action="store_true", help="processor-day and latency: attach py-spy to the processor (top functions)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--timeout", type=float, default=600, help="seconds a single drain may take")
    p.add_argument("--stall", type=float, default=90,
                   help="seconds without progress before a drain counts as stuck (a bridge batch of 1,000 "
                        "100-reading messages is 100,000 readings: long on a loaded machine)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    p.add_argument("--shared-kafka", action="store_true",
                   help="use the stack's Kafka (fresh topics) instead of a private broker started for the run")
    p.add_argument("--merge", action="store_true",
                   help="replace only the cases run now in today's results (each case records its load at the end)")
    args = p.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    return args


def _need_stack(args: argparse.Namespace) -> None:
    """The run brings its own Mosquitto (and Kafka unless --shared-kafka); it needs the stack's InfluxDB.
    A service that is down is started through deploy/native/up, as the tests do; nothing is restarted."""
    import urllib.request

    from infra.settings import Settings
    from infra.stack import ensure_stack_up

    if args.shared_kafka:
        ensure_stack_up()
        return
    try:
        urllib.request.urlopen(f"{Settings().influx.url}/health", timeout=5).read()
    except OSError:
        ensure_stack_up()


def _git() -> str:
    proc = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1])
    return proc.stdout.strip() or "unknown"


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = args.cases or DEFAULT
    _need_stack(args)
    run = Run(args)
    started = time.perf_counter()
    results: dict = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "git": _git(),
                     "argv": argv, "machine": {"cores": os.cpu_count(), "load_start": _load()}, "cases": run.results}
    if args.merge and (args.out / f"{dt.date.today().isoformat()}.json").exists():
        earlier = json.loads((args.out / f"{dt.date.today().isoformat()}.json").read_text())
        results["cases"] = {**earlier["cases"], **run.results}
        results["argv"] = earlier["argv"] + ["+"] + argv
        results["machine"]["load_start"] = earlier["machine"]["load_start"]
        run.results = results["cases"]
    try:
        run.bench.start_broker()
        if not args.shared_kafka:
            t = time.perf_counter()
            run.bench.start_kafka()
            print(f"  private Kafka on port {run.bench.kafka_port} in {time.perf_counter() - t:.0f} s", flush=True)
        for name in names:
            print(f"== {name}", flush=True)
            t = time.perf_counter()
            try:
                run.results[name] = CASES[name](run)
            except Exception as exc:  # noqa: BLE001 - one broken case must not lose the others' figures
                traceback.print_exc()
                run.results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            run.results[name].update(wall_s=round(time.perf_counter() - t, 1), load_end=_load())
            _write(run, results, args, started, final=False)  # a later interruption keeps what is measured
    finally:
        run.bench.cleanup(keep_logs=_failed(run.results))
    _write(run, results, args, started, final=True)
    return 1 if _failed(run.results) else 0


def _write(run: Run, results: dict, args: argparse.Namespace, started: float, final: bool) -> None:
    """Results so far to bench/results/<date>.json, .md and latest.md (printed at the end)."""
    from bench import report

    if getattr(run.bench, "telegraf", None):
        # `go install pkg@version` leaves the version string "unknown": the cache folder names it
        results["telegraf_version"] = Path(run.bench.telegraf).parent.parent.name.replace("telegraf-", "Telegraf ")
    results["machine"]["load_end"] = _load()
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["complete"] = final
    results["targets"] = report.targets(run.results)
    text = report.markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    day = dt.date.today().isoformat()
    (args.out / f"{day}.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / f"{day}.md").write_text(text)
    (args.out / "latest.md").write_text(text)
    if final:
        print(text)
        print(f"results: {args.out / (day + '.json')}, {args.out / (day + '.md')}, {args.out / 'latest.md'}")


def _failed(results: dict) -> bool:
    """Did any case, or any tool run inside a case, end in an error or without a time?"""
    runs = [x for r in results.values() for x in r.get("runs", {}).values()]
    return any("error" in r for r in results.values()) or any("error" in x or x.get("seconds") is None
                                                                for x in runs)


def _load() -> list[float]:
    from bench.harness import load_average

    return load_average()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
