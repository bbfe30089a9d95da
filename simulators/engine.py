"""The simulation run: step every domain's model through simulated time, inject faults, encode,
publish at the requested rate, and write the ground-truth manifest.

Payloads depend only on (seed, start, options): the same inputs give byte-identical payloads, which
the run's SHA-256 digest over every (topic, payload) shows.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from schemas import domain as get_domain
from simulators.base import LOCAL_OFFSET_H, Model, Sensors
from simulators.faults import FAULTS, FaultInjector
from simulators.formats import encode
from simulators.registry import models
from simulators.scenarios import Scenario
from simulators.scenarios import scenario as get_scenario

MODELS: dict[str, type[Model]] = models()  # every domain's generator, discovered (simulators/registry.py)
LATE_BY_TICKS = 3  # a late message goes out after the sensor's next readings: out of order
LOCAL_NS = LOCAL_OFFSET_H * 3600 * 10**9
DAY_NS = 86400 * 10**9


class Sink(Protocol):
    def publish(self, topic: str, payload: bytes) -> object: ...


@dataclass
class SimOptions:
    """One run. `interval` is simulated seconds between a sensor's readings; `rate` is readings per
    wall second per sensor (0: as fast as possible); speedup = interval * rate when both are set."""

    domains: list[str]
    sensors: int = 20
    ticks: int = 30
    interval: float = 60.0
    rate: float = 1.0
    seed: int = 1
    fmt: str = "native"
    batch: int = 1
    start_ns: int | None = None
    faults: dict[str, float] = field(default_factory=dict)
    scenario: str | None = None   # simulators/scenarios.py: calm days with plan-threshold episodes

    def resolved_start(self) -> int:
        """Given start, else the UTC midnight before (now - simulated span): deterministic for a day.
        A scenario starts at a local (UTC+8) midnight: its episodes are set in local hours."""
        if self.start_ns is not None:
            return self.start_ns
        span = self.ticks * self.interval
        if self.scenario is not None:
            local_today = (time.time_ns() + LOCAL_NS) // DAY_NS
            return int((local_today - math.ceil(span / 86400)) * DAY_NS - LOCAL_NS)
        begin = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=span)
        midnight = begin.replace(hour=0, minute=0, second=0, microsecond=0)
        return int(midnight.timestamp()) * 10**9


@dataclass
class RunStats:
    """What a run sent, for the summary and the manifest."""

    messages: int = 0
    readings: int = 0
    bytes: int = 0
    by_domain: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0

    def summary(self) -> dict:
        rate = self.messages / self.elapsed if self.elapsed else 0.0
        return {"messages": self.messages, "readings": self.readings, "bytes": self.bytes,
                "by_domain": dict(self.by_domain), "faults": {f: self.faults.get(f, 0) for f in FAULTS},
                "elapsed_s": round(self.elapsed, 3), "messages_per_s": round(rate, 1),
                "readings_per_s": round(self.readings / self.elapsed, 1) if self.elapsed else 0.0,
                "payload_sha256": self.digest.hexdigest()}


class Simulation:
    """A run over several domains; `run(sink)` publishes everything and returns the stats."""

    def __init__(self, options: SimOptions, truth: Path | None = None) -> None:
        unknown = [d for d in options.domains if d not in MODELS]
        if unknown:
            raise ValueError(f"no simulator for {', '.join(unknown)}; known: {', '.join(MODELS)}")
        if options.fmt in ("ttn", "chirpstack") and options.batch != 1:
            raise ValueError(f"--batch applies to native and senml; {options.fmt} uplinks carry one reading")
        self.options = options
        self.start = options.resolved_start()
        root = np.random.SeedSequence(options.seed)
        children = root.spawn(2 * len(options.domains) + 1)
        self.models: list[Model] = []
        self.injectors: list[FaultInjector] = []
        for i, name in enumerate(options.domains):
            sensors = Sensors.place(name, options.sensors)
            self.models.append(MODELS[name](sensors, np.random.default_rng(children[2 * i])))
            self.injectors.append(FaultInjector(options.faults, len(sensors), np.random.default_rng(children[2 * i + 1])))
        self.message_rng = np.random.default_rng(children[-1])
        self.scenario: Scenario | None = None
        if options.scenario is not None:
            self.scenario = get_scenario(options.scenario).only(options.domains)
            self._check_episode_sites()
            if self.scenario.episodes and (self.start + LOCAL_NS) % DAY_NS:
                raise ValueError(f"scenario {options.scenario}: start at a local (UTC+8) midnight, e.g. "
                                 "2026-12-06T00:00:00+08:00 (its episodes are set in local hours)")
        self.episode_rngs = [np.random.default_rng(s) for s in root.spawn(len(options.domains))]
        self.truth_path = truth
        self.stats = RunStats()

    def _check_episode_sites(self) -> None:
        """Each episode's site has sensors in this run (else it shapes nobody and its alert cannot fire)."""
        assert self.scenario is not None
        for e in self.scenario.episodes:
            model = next(m for m in self.models if m.domain == e.domain)
            if not (model.sensors.site == e.site).any():
                raise ValueError(f"episode {e.name}: no {e.domain} sensor at {e.site} with {self.options.sensors} "
                                 f"sensors per domain; use more (--sensors 10 covers every episode site)")

    def expected(self) -> list[dict]:
        """The alerts the scenario's episodes must raise in this run (empty without a scenario)."""
        return [x.to_dict() for x in self.scenario.expected(self.start)] if self.scenario else []

    def run(self, sink: Sink, progress: Callable[[int, RunStats], None] | None = None) -> RunStats:
        opt = self.options
        truth = open(self.truth_path, "w") if self.truth_path else None
        late: deque[tuple[int, str, bytes]] = deque()
        buffers: dict[tuple[int, int], list] = {}
        wall0 = time.monotonic()
        try:
            for k in range(opt.ticks):
                if opt.rate > 0:
                    delay = wall0 + k / opt.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                t = self.start + int(round(k * opt.interval * 1e9))
                last_tick = k == opt.ticks - 1
                for d, (model, injector) in enumerate(zip(self.models, self.injectors)):
                    values = model.step(t, opt.interval)
                    if self.scenario is not None:
                        values = self.scenario.apply(model, t, self.start, values, self.episode_rngs[d])
                    _, hi = get_domain(model.domain).bounds()
                    values, send, skew, faults = injector.apply(values, t / 1e9, hi)
                    if truth:
                        for i in np.flatnonzero(~send & ~np.isnan(values).all(axis=1)):
                            truth.write(json.dumps({"domain": model.domain, "site": str(model.sensors.site[i]),
                                                    "sensor_id": str(model.sensors.ids[i]), "ts": t, "seq": k,
                                                    "faults": faults[i], "sent": False}) + "\n")
                    for i in np.flatnonzero(send):
                        row = values[i]
                        reading = (t + int(skew[i] * 1e9), k, {f: float(v) for f, v in zip(model.fields, row) if v == v})
                        buffers.setdefault((d, i), []).append((reading, faults[i]))
                    for i in range(model.n):
                        buf = buffers.get((d, i))
                        if buf and (len(buf) >= opt.batch or last_tick):
                            self._emit(sink, model, injector, i, buf, late, truth, k)
                            buffers[(d, i)] = []
                while late and (late[0][0] <= k or last_tick):
                    _, topic, payload, lines = late.popleft()
                    self._send(sink, topic, payload, truth, lines)
                if progress:
                    progress(k + 1, self.stats)
        finally:
            if truth:
                truth.close()
        for injector in self.injectors:
            self.stats.faults.update(injector.counts)
        self.stats.elapsed = time.monotonic() - wall0
        return self.stats

    def _emit(self, sink: Sink, model: Model, injector: FaultInjector, i: int, buf: list,
              late: deque, truth, tick: int) -> None:
        sensors = model.sensors
        sensor, site = str(sensors.ids[i]), str(sensors.site[i])
        readings = [r for r, _ in buf]
        topic, payload = encode(self.options.fmt, model.domain, site, sensor, readings)
        dup, is_late, bad = injector.message_faults()
        flags = [name for name, on in (("duplicate", dup), ("late", is_late), ("malformed", bad)) if on]
        if bad:
            payload = payload[: max(1, len(payload) // 2)]
        for name in flags:
            injector.counts[name] += 1
        self.stats.readings += len(readings)
        self.stats.by_domain[model.domain] += len(readings)
        lines = [json.dumps({"domain": model.domain, "site": site, "sensor_id": sensor, "ts": ts,
                             "seq": seq, "values": values, "faults": faults + flags,
                             "topic": topic, "sent": True}, separators=(",", ":")) + "\n"
                 for (ts, seq, values), faults in buf] if truth else []
        if is_late:
            late.append((tick + LATE_BY_TICKS, topic, payload, lines))
        else:
            self._send(sink, topic, payload, truth, lines)
        if dup:
            self._send(sink, topic, payload)

    def _send(self, sink: Sink, topic: str, payload: bytes, truth=None, lines: list[str] = ()) -> None:  # noqa: ANN001
        """Publish one message; its readings go to the truth file only once the sink took it (a
        publish that raises leaves no reading claimed as sent)."""
        sink.publish(topic, payload)
        if truth:
            truth.writelines(lines)
        self.stats.messages += 1
        self.stats.bytes += len(payload)
        self.stats.digest.update(topic.encode() + b"\0" + payload + b"\0")


class NullSink:
    """Publishes nowhere (--dry-run and benchmarks of generation alone)."""

    def publish(self, topic: str, payload: bytes) -> None:
        return None


def write_manifest(path: Path, options: SimOptions, start_ns: int, stats: RunStats, extra: dict) -> None:
    """The run's ground truth summary: options, start, counts per fault, digest, achieved rate."""
    doc = {"options": {**options.__dict__, "start_ns": start_ns}, "start": dt.datetime.fromtimestamp(
        start_ns / 1e9, dt.timezone.utc).isoformat(), **stats.summary(), **extra}
    path.write_text(json.dumps(doc, indent=2, default=str))


def ticks_for(duration_s: float | None, count: int | None, rate: float) -> int:
    """Ticks per sensor from --count, or from --duration at --rate."""
    if count is not None:
        return count
    if duration_s is None:
        raise ValueError("give --duration or --count")
    if rate <= 0:
        raise ValueError("--duration needs a --rate above 0 (or use --count)")
    return max(1, math.ceil(duration_s * rate))
