"""Where the time goes: py-spy attached to the bridge (both message shapes) and to the processor over
a full simulated day, whose throughput is also measured hour by hour (issue 14: cost per reading
must not grow with the day)."""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.harness import Bench, KafkaCounter, Measured, Sampler, free_port, wait_until_count
from bench.pipeline import Messages, _wait_forwarding, drain
from simulators.engine import MODELS

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


class Spy:
    """py-spy recording one process (sampling from outside, --nonblocking: the target is not paused)."""

    def __init__(self, target: Measured, out: Path, rate: int = 50) -> None:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.out = out
        self.proc = subprocess.Popen([exe, "record", "--pid", str(target.proc.pid), "--rate", str(rate),
                                      "--format", "raw", "--output", str(out), "--nonblocking"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> list[dict]:
        """Stop recording (SIGINT makes py-spy write its file) and summarise the stacks."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if not self.out.exists():
            err = self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc.stderr else ""
            raise RuntimeError(f"py-spy wrote no profile ({err.strip()}); it needs ptrace (run as root or "
                               "set kernel.yama.ptrace_scope=0)")
        return top_functions(self.out.read_text())


def _name(frame: str) -> str:
    """'func (/abs/path/pkg/mod.py:12)' -> 'func (pkg/mod.py)': library paths from site-packages or the
    standard library's folder, ours as the last two components."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    lib = re.search(r"(?:site-packages|/lib/python3\.\d+)/(.*)$", path)
    path = lib.group(1) if lib else "/".join(path.rsplit("/", 2)[-2:])
    return f"{m.group('func')} ({path})"


# Frames every sample passes through (entry points, the CLI, thread bootstrap): no information.
WRAPPERS = ("runpy>)", "/cli.py)", "threading.py)", "typer/main.py)", "typer/core.py)", "click/core.py)")


def top_functions(collapsed: str, n: int = 15) -> dict:
    """From py-spy's collapsed stacks: top functions by own samples and by inclusive samples, in % of
    the samples after start-up (stacks inside the import machinery are counted apart)."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = startup = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        if "<frozen importlib" in stack:
            startup += k
            continue
        frames = [_name(f) for f in stack.split(";")[1:] if f]  # the first item is the thread / process
        if not frames:
            continue
        total += k
        own[frames[-1]] += k
        for f in set(frames):
            if not any(w in f for w in WRAPPERS):
                incl[f] += k
    share = lambda c: [{"function": f, "share_pct": round(100 * v / total, 1)} for f, v in c.most_common(n)]  # noqa: E731
    return {"samples": total, "startup_samples": startup, "self": share(own), "inclusive": share(incl)}


def profile_bridge(b: Bench, single: Messages, batch: Messages, args: argparse.Namespace) -> dict:
    """The bridge draining each message shape with py-spy attached."""
    out = {}
    for msgs in (single, batch):
        spies: list[Spy] = []

        def attach(procs: list[Measured], shape: str = msgs.shape) -> None:
            spies.extend(Spy(p, b.workdir / f"profile-bridge-{shape}-{i}.txt") for i, p in enumerate(procs))

        result = drain(b, msgs, "bridge", 1, timeout=args.timeout, stall=args.stall, on_start=attach)
        result.pop("settings")
        result["profile"] = spies[0].stop() if spies else None
        out[msgs.shape] = result
        print(f"    {msgs.shape}: {result.get('readings_per_s')} readings/s under py-spy", flush=True)
    return {"runs": out}


def processor_day(b: Bench, args: argparse.Namespace) -> dict:
    """A full simulated day (yesterday, UTC+8) of `--day-sensors` sensors per domain reporting each
    minute goes through a bridge into Kafka; then a fresh processor reads it all while its committed
    offsets are sampled: throughput per simulated hour (the topic is in event-time order)."""
    domains = list(MODELS) if args.day_domains == "all" else [d.strip() for d in args.day_domains.split(",") if d.strip()]
    s = b.settings("day", buckets=True)
    counter = KafkaCounter(s, [s.kafka.telemetry_topic(d) for d in domains])
    bridge = b.smartcity("day-bridge", s, "bridge", "--client-id", f"bench-{b.tag}-day", "--group",
                         f"bench{b.tag}day", "--session-expiry", "600", "--metrics-port", "0")
    _wait_forwarding(b, s, counter, [bridge])
    local_midnight = (int(time.time()) + 8 * 3600) // 86400 * 86400 - 8 * 3600 - 86400
    start = dt.datetime.fromtimestamp(local_midnight, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    base = counter.records()
    readings = args.day_sensors * len(domains) * 1440
    t = time.perf_counter()
    sim = b.smartcity("day-simulate", s, "simulate", "--domains", ",".join(domains), "--sensors",
                      str(args.day_sensors), "--count", "1440", "--interval", "60", "--rate", "0", "--batch", "60",
                      "--seed", str(args.seed), "--start", start)
    records = args.day_sensors * len(domains) * -(-1440 // 60)  # one record per 60-reading message
    filled, got, _ = wait_until_count(counter.records, base + records, [bridge], timeout=1800, stall=60)
    print(f"  a day of {readings:,} readings in Kafka after {time.perf_counter() - t:.0f} s", flush=True)
    sim.stop()
    bridge.stop()
    total = counter.records()
    group = f"bench{b.tag}dayproc"
    port = free_port()
    proc = b.smartcity("day-process", s, "process", "--domains", ",".join(domains), "--group", group,
                       "--metrics-port", str(port))
    spy = Spy(proc, b.workdir / "profile-processor-day.txt") if args.profile else None
    # progress from the processor's own counter of records consumed (sampled every 0.5 s): commits
    # come per domain checkpoint, too coarse to tell one simulated hour from the next
    sampler = Sampler(lambda: _records_consumed(port), every=0.5)
    sampler.start()
    try:
        elapsed, done, usage = wait_until_count(lambda: counter.committed(group), total, [proc], timeout=3600,
                                                stall=120, every=0.5)
    finally:
        samples = sampler.stop() + [(time.perf_counter() - sampler.t0, counter.committed(group))]  # the end: all committed
        profile = spy.stop() if spy else None
        proc.stop()
        counter.close()
    per_record = readings / max(total, 1)   # records carry 60 readings (probes aside): rates in readings
    hours = [None if h is None else round(h * per_record) for h in hourly_rates(samples, total)]
    out = {"domains": ",".join(domains), "sensors": args.day_sensors, "readings": readings, "records": total,
           "committed": done, "seconds": round(elapsed, 1) if elapsed else None, "usage": usage,
           "hourly_readings_per_s": hours, "profiled": bool(spy), "profile": profile}
    if elapsed:
        out["readings_per_s"] = round(readings / elapsed)
        out["usage"]["day-process"]["cpu_s_per_million_readings"] = round(
            usage["day-process"]["cpu_s"] / readings * 1e6, 1)
    out.update(quarters(hours, readings / 24))
    return out


def _records_consumed(port: int) -> int:
    """The processor's `processor_records_total` summed over domains (0 until its endpoint answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("processor_records_total{")))


def quarters(hours: list[float | None], per_hour: float) -> dict:
    """Readings/s over the first and the last six simulated hours, and their ratio. Commits come once
    sampled (every 0.5 s), so single hours are only resolved when an hour takes several samples;
    quarter days are steady at any size."""
    def rate(part: list[float | None]) -> float | None:
        known = [h for h in part if h]
        return round(len(known) * per_hour / sum(per_hour / h for h in known)) if known else None

    first, last = rate(hours[:6]), rate(hours[-6:])
    return {"first_quarter_readings_per_s": first, "last_quarter_readings_per_s": last,
            "hour24_vs_hour1": round(last / first, 2) if first and last else None}


def hourly_rates(samples: list[tuple[float, int]], total: int, hours: int = 24) -> list[float | None]:
    """Records per second for each 1/24 of the topic, from (time, committed) samples, interpolated;
    the first hour is timed from the first commit (the process's start-up is not a reading's cost)."""
    pts = [(t, c) for t, c in samples if c > 0]
    if len(pts) < 2:
        return []

    def when(target: float) -> float | None:
        for (t0, c0), (t1, c1) in zip(pts, pts[1:]):
            if c0 <= target <= c1 and c1 > c0:
                return t0 + (t1 - t0) * (target - c0) / (c1 - c0)
        return pts[0][0] if target <= pts[0][1] else None

    rates: list[float | None] = []
    for h in range(hours):
        lo, hi = max(total * h / hours, pts[0][1]), total * (h + 1) / hours
        if hi <= lo:  # the first commit already covers this hour: take the rate of the next step
            hi = next((c for _, c in pts if c > lo), hi) if h == 0 else hi
        ta, tb = when(lo), when(hi)
        rates.append(round((hi - lo) / (tb - ta)) if ta is not None and tb is not None and tb > ta else None)
    return rates
