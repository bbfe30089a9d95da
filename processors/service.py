"""The processor service: Kafka consumer group -> columns -> domain plug-ins -> InfluxDB and alerts.

Per poll: decode the records of each domain into columns and write them raw (`telemetry` bucket).
Each domain's checkpoint comes round every `compute_every` seconds (`_flush`, one domain per step so
the raw path runs in between; later when windows grow expensive, so that computing them takes at
most `compute_share` of the time): the domain's readings of those polls are merged into its
domain's window state (running aggregates per sensor and window, processors/buffer.py: never the
readings themselves), its plug-in recomputes the touched windows from it once, and the checkpoint
(`ProcessorService.checkpoint`) writes the results, produces observations and dead letters, confirms
every one of them, and only then commits the domain's offsets. Writes are idempotent (same measurement + tags
+ time overwrite), so a replay after a crash gives the same numbers.

Positions: every partition this processor owns has an explicit next offset (`next_offset`), set by
a seek when the partition is assigned and advanced only by records actually processed; a fetch that
does not start there is refused and the partition sought back (see `_contiguous`), so nothing can be
skipped, whatever the committed offset or the InfluxDB state. A newly assigned partition is sought
back to the start of its domain's open windows (`offsets_for_times` on the event-time record
timestamps the bridge sets), never past the committed offset, or to the log start when the group has
committed nothing; a partition the processor kept through a rebalance continues where it was (its
state is intact), so a rebalance replays only what the new owner lacks. Readings older than the
state are still stored raw and their day is recomputed from the raw bucket.

Outages: InfluxDB and Kafka failures are waited out with backoff for as long as they last. While it
waits the processor pauses its partitions and keeps polling, so it stays in the consumer group
(heartbeats and max.poll.interval.ms are satisfied) and resumes by itself.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata
from prometheus_client import start_http_server

from infra.clients import RebalanceWatch, influx_client, kafka_consumer, kafka_producer, subscribe_when_known
from infra.influxwrite import InfluxWriter
from infra.logs import event
from infra.settings import Settings
from processors.history import FluxHistory
from processors.influx import MAX_BACKOFF, InfluxGateway, Refused
from processors.metrics import ProcessorMetrics
from processors.plugin import DAY_NS, DomainProcessor, Observation, Output, day_start, escape, local_day
from processors.registry import processors
from processors.stale import StaleDetector
from schemas.batch import ReadingBatch
from schemas.envelope import DeadLetter
from schemas.registry import domain as get_domain
from schemas.thresholds import load_plan

log = logging.getLogger("smartcity.processor")

KAFKA_CALL_MS = 10_000        # bound on one blocking Kafka call (commit, committed, offsets lookups)
REJOIN_WAIT = 60.0            # seconds a commit waits for the group to hand partitions back after a rejoin
RAW_IN_FLIGHT = 4             # raw writes queued beside the polls, at most
MAX_CHECKPOINT_AGE = 30.0     # seconds a domain's readings wait for their windows and commit, at most
MAX_PENDING = 100_000         # readings of a domain stored raw whose windows wait for its checkpoint, at most


def district_topic(settings: Settings, domain: str) -> str:
    """The domain's district notices (one partition: one member computes the district's figures)."""
    return f"{settings.kafka.topic_prefix}districts.{domain}"


@lru_cache(maxsize=1 << 16)
def site_partition(site: str, partitions: int) -> int:
    """The partition a record keyed by `site` goes to (the default partitioner of kafka-python and of
    the Java client: murmur2 of the key bytes, positive, modulo the partition count)."""
    return (murmur2(site.encode()) & 0x7FFFFFFF) % max(partitions, 1)


class Stopping(Exception):
    """stop() was called while waiting for a dependency: leave without committing."""


def raw_lines(batch: ReadingBatch) -> list[str]:
    """Line protocol for raw readings: measurement = domain, tags site/sensor/source, one field per
    present value. Built column by column: each distinct tag value escaped once, each field column
    formatted in one pass (a Python float's repr is line protocol's number syntax)."""
    sensors, sites, sources = batch.sensor_id.tolist(), batch.site.tolist(), batch.source.tolist()
    tag = {s: escape(s) for s in {*sensors, *sites, *sources}}
    prefix = [f"{batch.domain},sensor={tag[a]},site={tag[b]},source={tag[c]} " for a, b, c in zip(sensors, sites, sources)]
    columns = []
    for j, name in enumerate(batch.fields):
        col = batch.values[:, j]
        present = ~np.isnan(col)
        if not present.any():
            continue
        texts = [f"{name}={v!r}" for v in col.tolist()]
        if not present.all():
            texts = [t if p else "" for t, p in zip(texts, present.tolist())]
        columns.append(texts)
    ts = batch.ts.tolist()
    return [f"{p}{','.join(filter(None, fields))} {t}" for p, t, *fields in zip(prefix, ts, *columns)]


@dataclass
class Checkpoint:
    """What the polls since the last checkpoint produced, waiting to be made safe before their offsets
    are committed: readings already stored raw whose windows are computed at the checkpoint."""

    offsets: dict[TopicPartition, int] = field(default_factory=dict)   # next offset per partition
    points: list[str] = field(default_factory=list)                      # compliance bucket lines
    observations: list[Observation] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    batches: dict[str, list[ReadingBatch]] = field(default_factory=lambda: defaultdict(list))  # by domain
    raw_writes: list[tuple[Future, list[list[str]]]] = field(default_factory=list)  # raw writes not yet confirmed
    opened: float = field(default_factory=time.monotonic)   # when its first poll came
    records: dict[str, int] = field(default_factory=lambda: defaultdict(int))                  # by domain
    readings: int = 0
    district: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # days noticed, by domain
    notices: list[tuple[str, bytes, bytes]] = field(default_factory=list)             # to districts.<domain>
    owned_points: list[tuple[TopicPartition, str]] = field(default_factory=list)  # written only while owned


class _Assignments(ConsumerRebalanceListener):
    """Notes that the assignment changed; the poll loop repositions the partitions (kafka-python runs
    this callback inside its event loop, where the blocking calls a rewind needs are not allowed)."""

    def __init__(self, service: "ProcessorService") -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.service.assignment_changed = True

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.service.assignment_changed = True


class ProcessorService:
    """Consumes telemetry.<domain> for the given domains in one consumer group."""

    def __init__(self, settings: Settings, domains: list[str], *, group: str = "processors",
                 stale_after: float = 120.0, instance_id: str | None = None, session_timeout_ms: int = 10_000,
                 metrics_port: int | None = None, poll_timeout_ms: int = 500, compute_every: float = 1.0,
                 compute_share: float = 0.2, **consumer_options: Any) -> None:
        plugins = processors()
        missing = [d for d in domains if d not in plugins]
        if missing:
            raise ValueError(f"no processor for {', '.join(missing)}; known: {', '.join(plugins)}")
        self.settings = settings
        self.group = group
        self.metrics_port = metrics_port
        self.poll_timeout_ms = poll_timeout_ms
        self.compute_every, self.compute_share = compute_every, compute_share
        self.pending: dict[str, Checkpoint] = {}   # by domain: stored raw, windows and commit to come
        self.flushing: dict[str, Checkpoint] = {}  # by domain: the checkpoint being made
        self.flushed_at: dict[str, float] = {}     # by domain: when its last checkpoint was made
        self.compute_at = 0.0                      # when the next checkpoint (of one domain) may be made
        self.waited = 0.0   # seconds spent in _wait, in total
        self.district_topics = {district_topic(settings, d): d for d in domains}
        self.topics = {**{settings.kafka.telemetry_topic(d): d for d in domains}, **self.district_topics}
        self.metrics = ProcessorMetrics()
        self.influx_client = influx_client(settings, timeout_ms=30_000)
        self.influx_writer = InfluxWriter(settings.influx, timeout_s=30.0)
        self.influx = InfluxGateway(self.influx_client, self.influx_writer, self.metrics, self._wait)
        # Raw writes run beside the next poll (one at a time, a few queued); a write that fails there is
        # made again through the gateway, which waits out outages and sorts refusals (`_settle_raw`).
        self.raw_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-write")
        self.raw_inflight: deque[Future] = deque()
        plan = load_plan()
        history = FluxHistory(self.influx.query, settings.influx.bucket_compliance)
        self.plugins: dict[str, DomainProcessor] = {d: plugins[d](plan, history) for d in domains}
        self.states = {d: p.new_state() for d, p in self.plugins.items()}
        # max_block_ms: a send while Kafka is away fails fast instead of blocking the loop for a minute.
        self.producer = kafka_producer(settings, linger_ms=5, max_block_ms=2_000)
        # Static membership (instance_id): a restarted member takes its partitions back at once; the short
        # session timeout hands a dead member's partitions to the others within seconds.
        self._new_consumer = lambda: kafka_consumer(
            settings, group, max_poll_records=5000, group_instance_id=instance_id, session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(session_timeout_ms // 4, 500), **consumer_options)
        self.consumer = self._new_consumer()
        self.watch = RebalanceWatch(_Assignments(self))
        self.stale = StaleDetector(minimum=stale_after)
        self.stopping = threading.Event()
        self.totals: dict[str, int] = defaultdict(int)
        self.assignment_changed = False
        self.owned: set[TopicPartition] = set()
        self.next_offset: dict[TopicPartition, int] = {}
        self.reseek: set[TopicPartition] = set()
        # partition -> the group's committed offset when it was assigned here: until this processor is
        # past it again, its state of those sites is a partial replay whose results must not be written
        self.replaying: dict[TopicPartition, int] = {}

    # -- reading earlier results -------------------------------------------------------------------

    def _watermark(self, domain: str) -> int | None:
        """Newest event time of the domain already stored raw (not later than now: a skewed clock must
        not move the open windows past the stream)."""
        rows = self.influx.query(
            f'from(bucket: "{self.settings.influx.bucket_raw}") |> range(start: 0) '
            f'|> filter(fn: (r) => r._measurement == "{domain}") |> keep(columns: ["_time"]) '
            '|> group() |> max(column: "_time")')
        newest = max((r["_time"] for r in rows), default=None)
        return None if newest is None else min(newest, time.time_ns())

    # -- waiting without leaving the group ---------------------------------------------------------

    def _wait(self, seconds: float, dependency: str) -> None:
        """Sleep `seconds` for `dependency` to come back while staying in the consumer group: every
        partition is paused and the consumer keeps polling (heartbeats, rebalances, max.poll.interval.ms).
        Records that a new assignment fetches meanwhile are dropped and their partition re-sought."""
        gauge = self.metrics.waiting.labels(dependency)
        gauge.set(1)
        started = time.monotonic()
        deadline = started + seconds
        try:
            while not self.stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.consumer.pause(*self.consumer.assignment())
                try:
                    polled = self.consumer.poll(timeout_ms=int(min(remaining, 1.0) * 1000) + 1)
                except KafkaError as exc:
                    event(log, "kafka_poll_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])
                    time.sleep(min(remaining, 1.0))
                    continue
                self.reseek.update(polled)
        finally:
            self.consumer.resume(*self.consumer.assignment())
            self.stale.pause(time.monotonic() - started)
            self.waited += time.monotonic() - started
            gauge.set(0)
        raise Stopping()

    # -- positions ---------------------------------------------------------------------------------

    def _position(self) -> None:
        """After an assignment change: forget revoked partitions (stale timers, window state), seek
        kept ones to where this processor is, and new ones back to their open windows."""
        delay = 0.5
        while self.assignment_changed or self.reseek:
            self.assignment_changed = False
            current = set(self.consumer.assignment())
            lost, new, kept = self.owned - current, current - self.owned, current & self.owned
            if lost:
                self._forget(lost)
            try:
                targets = self._rewind_targets(sorted(new)) if new else {}
            except KafkaError as exc:
                self.assignment_changed = True
                self.metrics.errors.labels("kafka_metadata").inc()
                event(log, "kafka_positions_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300],
                      retry_in=delay)
                self._wait(delay, "kafka")
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if self.assignment_changed:
                continue  # it changed again while we looked up offsets: start over
            targets.update({tp: self.next_offset[tp] for tp in kept})
            try:
                for tp, offset in targets.items():
                    self.consumer.seek(tp, offset)
            except (ValueError, KafkaError):
                self.assignment_changed = True  # a partition went away between lookup and seek: start over
                continue
            self.next_offset.update(targets)
            self.owned = current
            self.reseek.clear()
            if new or lost:
                self.metrics.rebalances.inc()
                event(log, "partitions_assigned", group=self.group, owned=len(current), new=len(new), kept=len(kept),
                      lost=len(lost))

    def _forget(self, lost: set[TopicPartition]) -> None:
        """State follows ownership: the sensors of revoked partitions leave the stale timers and window states."""
        gone = self.stale.forget(lost)
        by_domain: dict[str, list[str]] = defaultdict(list)
        for domain, sensor in gone:
            by_domain[domain].append(sensor)
        for domain, sensors in by_domain.items():
            self.states[domain].drop(sensors)
            # the pending checkpoint, and the one being made (a rebalance can come in its waits)
            for cp in (self.pending.get(domain), self.flushing.get(domain)):
                if cp is None:
                    continue
                for batches in cp.batches.values():
                    batches[:] = [b.take(~np.isin(b.sensor_id, sensors)) for b in batches]
                cp.readings = sum(len(b) for batches in cp.batches.values() for b in batches)
        for tp in lost:
            self.next_offset.pop(tp, None)
            self.replaying.pop(tp, None)
            if (cp := self.pending.get(self.topics[tp.topic])) is not None:
                cp.offsets.pop(tp, None)
                if not cp.offsets:  # all its partitions went elsewhere: their new owner replays them
                    del self.pending[self.topics[tp.topic]]
            try:
                self.metrics.lag.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass  # no lag reported for it yet
        event(log, "partitions_revoked", group=self.group, partitions=len(lost), sensors_forgotten=len(gone))

    def _rewind_targets(self, new: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Explicit start offsets for newly assigned partitions: the start of the domain's open windows,
        never past the committed offset; the log start when the group has committed nothing."""
        begin = self.consumer.beginning_offsets(new, timeout_ms=KAFKA_CALL_MS)
        committed = {tp: self.consumer.committed(tp, timeout_ms=KAFKA_CALL_MS) for tp in new}
        open_from: dict[TopicPartition, int] = {}
        readings = [tp for tp in new if tp.topic not in self.district_topics]   # notices replay from the commit
        for domain in {self.topics[tp.topic] for tp in readings}:  # one InfluxDB scan per domain, not per partition
            watermark = self._watermark(domain)
            if watermark is None:
                continue  # nothing stored yet: the committed offset (or the log start) is right
            start = int(day_start(local_day(np.array([watermark]))[0] - self.plugins[domain].horizon_days + 1))
            open_from.update({tp: max(start // 10**6, 0) for tp in readings if self.topics[tp.topic] == domain})
        found = self.consumer.offsets_for_times(open_from, timeout_ms=KAFKA_CALL_MS) if open_from else {}
        targets = {}
        for tp in new:
            target = committed[tp] if committed[tp] is not None else begin[tp]
            window = found.get(tp)
            if window is not None:
                target = min(target, window.offset)
            targets[tp] = max(target, begin[tp])
            if committed[tp] is not None and committed[tp] > targets[tp] and tp.topic not in self.district_topics:
                self.replaying[tp] = committed[tp]
            if committed[tp] is not None:
                self.metrics.rewound.inc(max(committed[tp] - targets[tp], 0))
            event(log, "rewind", topic=tp.topic, partition=tp.partition, committed=committed[tp], seek=targets[tp],
                  log_start=begin[tp])
        return targets

    def _contiguous(self, polled: dict[TopicPartition, list]) -> dict[TopicPartition, list]:
        """Only records that continue exactly where each owned partition stands: records of partitions
        not yet positioned are dropped (they are fetched again after the seek), already processed ones
        are dropped, and a fetch that skipped offsets is refused and the partition sought back."""
        out = {}
        for tp, records in polled.items():
            expected = self.next_offset.get(tp)
            if tp not in self.owned or expected is None:
                self.reseek.add(tp)
                continue
            if records[0].offset > expected:
                try:
                    log_start = self.consumer.beginning_offsets([tp], timeout_ms=KAFKA_CALL_MS)[tp]
                except KafkaError:
                    log_start = expected  # unknown: assume the records exist and fetch them again
                if log_start <= expected:
                    self.metrics.errors.labels("kafka_gap").inc()
                    event(log, "fetch_gap", logging.ERROR, topic=tp.topic, partition=tp.partition, expected=expected,
                          fetched=records[0].offset)
                    self.consumer.seek(tp, expected)
                    continue
                event(log, "records_lost_to_retention", logging.ERROR, topic=tp.topic, partition=tp.partition,
                      expected=expected, log_start=log_start)
            records = [r for r in records if r.offset >= expected]
            if records:
                out[tp] = records
        return out

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Poll, process, checkpoint until stop(); then leave (what was not checkpointed is replayed)."""
        if self.metrics_port:
            start_http_server(self.metrics_port, registry=self.metrics.registry)
        last_check = time.monotonic()
        try:
            if not subscribe_when_known(self.consumer, list(self.topics), self.watch, self.stopping):
                raise Stopping()
            while not self.stopping.is_set():
                if self.watch.stalled():
                    self._rejoin()
                try:
                    self._step()
                    if time.monotonic() - last_check >= 2.0:
                        last_check = time.monotonic()
                        self._check_stale()
                except (Stopping, KeyboardInterrupt):
                    raise
                except Exception as exc:  # noqa: BLE001 - the last line of defence: replay, never exit
                    event(log, "processor_step_failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}"[:500],
                          action="repositioning every partition at its committed offset and open windows")
                    log.exception("processor step failed")
                    self.owned, self.assignment_changed, self.pending = set(), True, {}
                    self._wait(1.0, "recovery")
            try:  # a graceful stop: what was stored raw gets its windows and is committed
                for domain in [d for d, cp in self.pending.items() if cp.offsets]:
                    self._flush(domain)
            except Stopping:
                raise
            except Exception as exc:  # noqa: BLE001 - not committed, so replayed by the next owner
                    event(log, "last_checkpoint_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])
        except Stopping:
            event(log, "processor_stopping", reason="stopped while waiting for a dependency; nothing uncommitted kept")
        finally:
            self.consumer.close(autocommit=False)
            try:
                self.producer.flush(10)
            except KafkaError:
                pass  # only unconfirmed sends are pending: their offsets were not committed
            self.producer.close(5)
            self.raw_pool.shutdown(wait=True, cancel_futures=True)
            self.influx_client.close()
            self.influx_writer.close()
            event(log, "processor_stopped", **self.totals)

    def _rejoin(self) -> None:
        """Replace a consumer whose rebalance never ended (RebalanceWatch); everything is repositioned
        at the committed offsets and open windows once the new one is assigned."""
        event(log, "rebalance_stalled", logging.WARNING, seconds=self.watch.stall_after,
              action="leaving and joining again with a new consumer")
        self.consumer.close(autocommit=False)
        self.consumer = self._new_consumer()
        self.watch = RebalanceWatch(_Assignments(self))
        self.owned, self.assignment_changed, self.pending = set(), True, {}
        if not subscribe_when_known(self.consumer, list(self.topics), self.watch, self.stopping):
            raise Stopping()

    def _step(self) -> None:
        """Position, poll and process once; checkpoint when one is due (`_flush`)."""
        self._position()
        try:
            polled = self.consumer.poll(timeout_ms=self.poll_timeout_ms)
        except KafkaError as exc:
            event(log, "kafka_poll_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])
            self._wait(1.0, "kafka")
            return
        if self.assignment_changed:
            self.reseek.update(polled)  # the assigning poll: reposition before using anything it returned
            return
        polled = self._contiguous(polled)
        if polled:
            self.process(polled)
        if (domain := self._due()) is not None:
            self._flush(domain)
        self._report_lag()

    def _due(self) -> str | None:
        """The domain whose checkpoint is due: one holding MAX_PENDING readings, else, once the spacing
        has passed, the one whose last checkpoint is oldest (round robin: one domain per step, so the
        raw path runs between the domains' window computations)."""
        waiting = [d for d, cp in self.pending.items() if cp.offsets]
        now = time.monotonic()
        overdue = [d for d in waiting if now - self.pending[d].opened >= MAX_CHECKPOINT_AGE]
        if overdue:  # no domain waits longer than this, however busy the others are
            return min(overdue, key=lambda d: self.pending[d].opened)
        full = [d for d in waiting if self.pending[d].readings >= MAX_PENDING]
        if full:
            return full[0]
        if waiting and now >= self.compute_at:
            return min(waiting, key=lambda d: self.flushed_at.get(d, 0.0))
        return None

    def _flush(self, domain: str) -> None:
        """Compute the windows of a domain's readings stored raw since its last checkpoint, then make
        that checkpoint. The next one (of any domain) is due after `compute_every` / domains seconds,
        or later when computing took more than `compute_share` of the time (the raw path never waits
        for more than one domain's windows; the district stage's queries count as computing)."""
        cp = self.flushing[domain] = self.pending.pop(domain)
        try:
            self._settle_raw(cp)   # windows of very late days are recomputed from the raw bucket: it must hold them
            started, waited = time.monotonic(), self.waited
            self.compute(cp)
            spent = time.monotonic() - started - (self.waited - waited)  # waiting out an outage is not computing
            self.checkpoint(cp)
        finally:
            self.flushing.pop(domain, None)
        self.flushed_at[domain] = time.monotonic()
        spacing = max(self.compute_every / len(self.plugins), spent * (1 - self.compute_share) / self.compute_share)
        self.compute_at = time.monotonic() + min(spacing, MAX_CHECKPOINT_AGE)

    def stop(self) -> None:
        self.stopping.set()

    def process(self, polled: dict[TopicPartition, list]) -> None:
        """One poll's records: readings decoded, written raw, and kept in their domain's pending
        checkpoint for their windows; district notices kept for the district stage."""
        offsets = {tp: records[-1].offset + 1 for tp, records in polled.items()}
        self.next_offset.update(offsets)  # the position moved past them; the checkpoint commits it
        by_domain: dict[str, list[tuple[TopicPartition, list]]] = defaultdict(list)
        for tp, records in polled.items():
            by_domain[self.topics[tp.topic]].append((tp, records))
        for domain, parts in by_domain.items():
            cp = self.pending.setdefault(domain, Checkpoint())
            cp.offsets.update((tp, offsets[tp]) for tp, _ in parts)
            for tp, records in parts:
                if tp.topic in self.district_topics:
                    cp.district[domain].update(self._noticed_days(records, cp))
            readings = [(tp, records) for tp, records in parts if tp.topic not in self.district_topics]
            if readings:
                self._readings(domain, readings, cp)

    def _readings(self, domain: str, parts: list[tuple[TopicPartition, list]], cp: Checkpoint) -> None:
        """Readings of one domain's partitions: every one stored raw; those on their site's partition
        (the record key is the site, so one processor owns a site) kept for the windows."""
        records = sum(len(rs) for _, rs in parts)
        self.metrics.records.labels(domain).inc(records)
        cp.records[domain] += records
        decoded = [(tp, self._decode(domain, rs, cp)) for tp, rs in parts]
        batch = ReadingBatch.concat([b for _, b in decoded])
        if not len(batch):
            return
        cp.raw_writes.append(self._write_raw(raw_lines(batch)))
        self.metrics.readings.labels(domain).inc(len(batch))
        partition_of = {s: tp for tp, b in decoded for s in dict.fromkeys(b.sensor_id.tolist())}
        back = [self._stale_observation(d, s, site, 0.0, False)
                for d, s, site in self.stale.seen(domain, batch.sensor_id, batch.site, partition_of, time.time())]
        if back:  # at once, like the "offline" ones: in order, and never lost with a pending checkpoint
            self._deliver(self._records(back, []))
        windowed = ReadingBatch.concat([b.take(self._at_home(tp, b.site)) for tp, b in decoded])
        if len(windowed) < len(batch):
            self.metrics.deadlettered.labels("off_site_partition").inc(len(batch) - len(windowed))
            event(log, "readings_off_their_site_partition", logging.WARNING, domain=domain,
                  readings=len(batch) - len(windowed),
                  reason="records not keyed by site (a bridge older than site keys, or another producer): "
                         "stored raw, not counted in the windows of a site another processor may own",
                  fix="upgrade every bridge; re-key the open days with `python -m processors.rekey`")
        cp.batches[domain].append(windowed)
        cp.readings += len(windowed)
        self.totals[f"{domain}_readings"] += len(batch)

    def _at_home(self, tp: TopicPartition, sites: np.ndarray) -> np.ndarray:
        """True for the rows whose site's key hashes to `tp` (kafka-python's and Kafka's default
        partitioner: murmur2 of the key, modulo the topic's partitions)."""
        count = len(self.consumer.partitions_for_topic(tp.topic) or ())
        if not count:  # no metadata yet (cannot happen for an assigned partition): nothing is known to be elsewhere
            return np.ones(len(sites), bool)
        names, inverse = np.unique(sites.astype(str), return_inverse=True)
        home = np.array([site_partition(n, count) == tp.partition for n in names.tolist()], bool)
        return home[inverse.reshape(-1)] if len(names) else np.zeros(0, bool)

    def _noticed_days(self, records: list, cp: Checkpoint) -> set[int]:
        """Local days named by district notices (a notice that is not one is dead-lettered)."""
        days: set[int] = set()
        for r in records:
            try:
                days.update(int(d) for d in json.loads(r.value)["days"])
            except (ValueError, TypeError, KeyError) as exc:
                self.metrics.deadlettered.labels("undecodable").inc()
                cp.dead_letters.append(DeadLetter.of(f"kafka/{r.topic}", r.value or b"",
                                                     f"not a district notice ({{\"days\": [local day, ...]}}): {exc}"))
        return days

    def _write_raw(self, lines: list[str]) -> tuple[Future, list[list[str]]]:
        """Start writing raw lines in the background (at most RAW_IN_FLIGHT writes queued: beyond, wait
        for the oldest, so a slow InfluxDB slows the polls instead of filling memory). The lines are
        kept (in a holder the writer empties on success) until the checkpoint confirms them."""
        while len(self.raw_inflight) >= RAW_IN_FLIGHT:
            self._await(self.raw_inflight.popleft())
        holder = [lines]
        future = self.raw_pool.submit(self._timed_write, holder)
        self.raw_inflight.append(future)
        return future, holder

    def _timed_write(self, holder: list[list[str]]) -> None:
        """One attempt at a raw write (the background thread), timed like the gateway's writes."""
        bucket, started = self.settings.influx.bucket_raw, time.monotonic()
        self.influx_writer.write(bucket, holder[0])
        self.metrics.write_latency.labels(bucket).observe(time.monotonic() - started)
        holder.clear()

    def _await(self, future: Future) -> None:
        """Wait for a background write while staying in the consumer group: most answers come within the
        first half second; a hung InfluxDB answers only after the request timeout, so between slices
        the consumer polls (paused) and the stale timers do not count the wait."""
        while not future.done():
            started = time.monotonic()
            wait_futures([future], timeout=0.5)
            self.stale.pause(time.monotonic() - started)
            self.waited += time.monotonic() - started
            if future.done():
                return
            if self.stopping.is_set():  # no more polls needed: a request ends within its timeout
                wait_futures([future], timeout=35)
                if not future.done():
                    raise Stopping()
                return
            self._wait(0.05, "influxdb")

    def _settle_raw(self, cp: Checkpoint) -> None:
        """Every raw write of the checkpoint confirmed: a write that failed in the background is made
        again through the gateway (outages waited out, refused lines found and dead-lettered)."""
        bucket = self.settings.influx.bucket_raw
        for future, holder in cp.raw_writes:
            self._await(future)
            if future.exception() is not None:  # any failure: the gateway sorts it out
                event(log, "raw_write_retried", logging.DEBUG, error=f"{future.exception()!r}"[:200])
                cp.dead_letters += self._refused(bucket, self.influx.write(bucket, holder[0]))
        cp.raw_writes.clear()

    def compute(self, cp: Checkpoint) -> None:
        """The windows touched by the checkpoint's readings, per domain, into its points and observations."""
        started = time.monotonic()
        for domain, batches in cp.batches.items():
            batch = ReadingBatch.concat(batches) if batches else None
            if batch is None or not len(batch):
                continue  # its sensors' partitions went to another member
            try:
                self._compute(domain, batch, cp)
            except Stopping:
                raise
            except Exception as exc:  # noqa: BLE001 - a plug-in failure must not stop the city; raw data is stored
                self.metrics.errors.labels("plugin").inc()
                event(log, "plugin_failed", logging.ERROR, domain=domain, readings=len(batch),
                      error=f"{type(exc).__name__}: {exc}"[:500])
        for domain, days in cp.district.items():
            if not days:
                continue
            try:
                result = self.plugins[domain].district(np.array(sorted(days), np.int64))
            except Stopping:
                raise
            except Exception as exc:  # noqa: BLE001 - as above; the notices are committed, the sites' results stay
                self.metrics.errors.labels("plugin").inc()
                event(log, "district_failed", logging.ERROR, domain=domain, days=len(days),
                      error=f"{type(exc).__name__}: {exc}"[:500])
                continue
            home = TopicPartition(district_topic(self.settings, domain), 0)
            cp.owned_points.extend((home, p) for p in (pt.line() for pt in result.points) if p)
            cp.observations.extend(result.observations)
        elapsed = time.monotonic() - started
        cp.points += [f"pipeline,service=processor,domain={d} records={n}i,"
                      f"lag={self._domain_lag(d)}i,batch_seconds={elapsed!r} {time.time_ns()}"
                      for d, n in cp.records.items()]

    def _decode(self, domain: str, records: list, cp: Checkpoint) -> ReadingBatch:
        """Columns of the decodable records; every other record is dead-lettered on its own."""
        try:
            batch, errors = ReadingBatch.from_records(domain, [r.value for r in records])
            if not errors:
                return batch
        except Exception:  # noqa: BLE001 - a hostile record must not take its batch down: isolate it below
            pass
        good = []
        for r in records:
            try:
                one, errors = ReadingBatch.from_records(domain, [r.value])
                reason = "; ".join(errors)
            except Exception as exc:  # noqa: BLE001 - dead-lettered with the reason
                one, reason = None, f"undecodable record: {type(exc).__name__}: {exc}"
            if one is not None and len(one) and not reason:
                good.append(one)
                continue
            self.metrics.errors.labels("undecodable").inc()
            self.metrics.deadlettered.labels("undecodable").inc()
            event(log, "undecodable_record", logging.ERROR, domain=domain, offset=r.offset, reason=reason[:300])
            cp.dead_letters.append(DeadLetter.of(f"kafka/{r.topic}", r.value or b"", reason[:1000]))
        return ReadingBatch.concat(good) if good else ReadingBatch.from_records(domain, [])[0]

    def _compute(self, domain: str, batch: ReadingBatch, cp: Checkpoint) -> None:
        """Feed the state and let the plug-in recompute the touched windows (late days from raw)."""
        plugin, state = self.plugins[domain], self.states[domain]
        state.add(batch)
        days = np.unique(local_day(batch.ts))
        oldest = state.oldest_day()
        late = days[days < oldest] if oldest is not None else days[:0]
        recent = days[days >= oldest] if oldest is not None else days
        result = plugin.windows(state, recent) if len(recent) else Output()
        for day in late:  # past the state's horizon: recompute that day from the raw bucket
            stored = self._load_day(domain, int(day))
            if stored is not None:  # the sites of these readings only: the others may belong to another member
                here = np.unique(batch.site[local_day(batch.ts) == day].astype(str))
                fresh = plugin.new_state()
                fresh.add(stored.take(np.isin(stored.site.astype(str), here)))
                extra = plugin.windows(fresh, np.array([day]))
                result.points.extend(extra.points)
                result.observations.extend(extra.observations)
        topic = self.settings.kafka.telemetry_topic(domain)
        count = len(self.consumer.partitions_for_topic(topic) or ())
        cp.owned_points.extend((TopicPartition(topic, site_partition(str(pt.tags.get("site", "")), count)), line)
                               for pt in result.points if (line := pt.line()))
        cp.observations.extend(result.observations)
        # the district stage's notice, produced once these results are written (checkpoint step 2)
        touched = sorted({*days.tolist(), *local_day(np.array([p.ts for p in result.points], np.int64)).tolist()})
        cp.notices.append((district_topic(self.settings, domain), domain.encode(),
                           json.dumps({"days": [int(d) for d in touched]}).encode()))

    def checkpoint(self, cp: Checkpoint) -> None:
        """The checkpoint: the one step after which a poll's records count as done.

        1. Flush state: the compliance points (and the pipeline metrics) are written to InfluxDB;
           lines InfluxDB refuses are found by bisection and become dead letters (the raw readings
           were written, the same way, before the plug-ins ran, because very late readings are
           recomputed from the raw bucket).
        2. Produce the rule observations and every dead letter, and wait for Kafka to acknowledge
           each record (kafka-python's flush() returns even when sends failed, so every future is
           checked; failed ones are sent again).
        3. Commit the offsets of the partitions this processor still owns.
        Every step waits out outages (partitions paused, group membership kept) instead of failing;
        nothing is committed before everything it depends on is safe. A crash anywhere before the
        commit replays the poll, which rewrites the same points (idempotent)."""
        started = time.monotonic()
        bucket = self.settings.influx.bucket_compliance
        # A member writes results only for the sites (and the district) it still owns: a rebalance in a
        # wait of this checkpoint handed the others to a member that recomputes them from their records.
        if self.assignment_changed or self.reseek:
            self._position()   # settle who owns what first (states of lost partitions dropped, new ones rewound)
        for tp in [tp for tp in self.replaying if tp in cp.offsets]:
            if cp.offsets[tp] > self.replaying[tp]:
                del self.replaying[tp]   # past where the group was: the state of its sites is whole again
            else:
                del cp.offsets[tp]       # still replaying: the previous owner wrote (and committed) these results
        cp.points += [line for tp, line in cp.owned_points if tp in self.owned and tp not in self.replaying]
        cp.dead_letters += self._refused(bucket, self.influx.write(bucket, cp.points))
        self._deliver(self._records(cp.observations, cp.dead_letters) + cp.notices)
        self._commit(cp.offsets)
        self.metrics.points.inc(len(cp.points))
        self.metrics.observations.inc(len(cp.observations))
        self.metrics.checkpoint_latency.observe(time.monotonic() - started)
        self.totals["points"] += len(cp.points)
        self.totals["dead_letters"] += len(cp.dead_letters)

    def _refused(self, bucket: str, refused: list[Refused]) -> list[DeadLetter]:
        """Dead letters for the lines InfluxDB refused, each with InfluxDB's message."""
        self.metrics.deadlettered.labels("influx_refused").inc(len(refused))
        return [DeadLetter.of(f"influxdb/{bucket}", r.line.encode(), f"InfluxDB refused the line: {r.reason}")
                for r in refused]

    def _records(self, observations: list[Observation], dead_letters: list[DeadLetter]) -> list[tuple[str, bytes, bytes]]:
        """Kafka records (topic, key, value) for observations (alerts.events) and dead letters."""
        kafka = self.settings.kafka
        return ([(kafka.alerts_topic, o.key(), json.dumps(o.to_dict(), ensure_ascii=False).encode()) for o in observations]
                + [(kafka.deadletter_topic, d.topic.encode(), d.model_dump_json().encode()) for d in dead_letters])

    def _deliver(self, records: list[tuple[str, bytes, bytes]]) -> None:
        """Produce `records` (topic, key, value) and return once Kafka acknowledged every one; records
        whose send or delivery failed are sent again after a backoff, for as long as Kafka is away."""
        pending, delay = records, 0.5
        while pending:
            sent, unsent = [], []
            for i, (topic, key, value) in enumerate(pending):
                try:
                    sent.append(((topic, key, value), self.producer.send(topic, key=key, value=value)))
                except KafkaError as exc:  # no metadata or buffer full: Kafka is away, keep the rest for later
                    unsent = pending[i:]
                    event(log, "kafka_send_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])
                    break
            while not all(f.is_done for _, f in sent):
                try:
                    self.producer.flush(timeout=1.0)
                except KafkaError:
                    pass  # flush() says nothing about success either way: the futures below do
                if not all(f.is_done for _, f in sent):
                    self._wait(0.5, "kafka")
            pending = unsent + [record for record, f in sent if f.failed()]
            if pending:
                self.metrics.errors.labels("kafka_produce").inc(len(pending))
                failure = next((f.exception for _, f in sent if f.failed()), None)
                event(log, "kafka_produce_failed", logging.WARNING, records=len(pending), error=str(failure)[:300],
                      retry_in=delay)
                self._wait(delay, "kafka")
                delay = min(delay * 2, MAX_BACKOFF)

    def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit `offsets` for the partitions still owned, retrying until Kafka confirms."""
        delay, rejoin_deadline = 0.5, time.monotonic() + REJOIN_WAIT
        while True:
            owned = self.consumer.assignment()
            mine = {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items() if tp in owned}
            if not mine and not owned and time.monotonic() < rejoin_deadline:
                self._wait(0.5, "kafka")  # (re)joining the group after an outage: wait for the assignment
                continue
            if not mine:
                return  # every partition moved on to another member: it replays them (idempotent writes)
            try:
                self.consumer.commit(mine, timeout_ms=KAFKA_CALL_MS)
                return
            except KafkaError as exc:
                self.metrics.errors.labels("kafka_commit").inc()
                event(log, "kafka_commit_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300],
                      retry_in=delay)
                self._wait(delay, "kafka")
                delay = min(delay * 2, MAX_BACKOFF)

    def _load_day(self, domain: str, day: int) -> ReadingBatch | None:
        """A whole local day of raw readings from InfluxDB, as columns (for very late data)."""
        start = int(day_start(day))
        rows = self.influx.query(
            f'from(bucket: "{self.settings.influx.bucket_raw}") |> range(start: time(v: {start - DAY_NS}), '
            f'stop: time(v: {start + DAY_NS})) |> filter(fn: (r) => r._measurement == "{domain}") '
            '|> pivot(rowKey: ["_time", "sensor", "site", "source"], columnKey: ["_field"], valueColumn: "_value")')
        if not rows:
            return None
        fields = get_domain(domain).fields
        docs = [json.dumps({"sensor_id": r["sensor"], "site": r["site"], "ts": r["_time"], "source": r["source"],
                            "values": {f: r[f] for f in fields if r.get(f) is not None}}).encode() for r in rows]
        return ReadingBatch.from_records(domain, docs)[0]

    # -- lag and silence --------------------------------------------------------------------------

    def _partition_lag(self, tp: TopicPartition) -> int | None:
        highwater, position = self.consumer.highwater(tp), self.next_offset.get(tp)
        return None if highwater is None or position is None else max(highwater - position, 0)

    def _domain_lag(self, domain: str) -> int:
        return sum(self._partition_lag(tp) or 0 for tp in self.owned & self.consumer.assignment()
                   if self.topics[tp.topic] == domain)

    def _report_lag(self) -> None:
        for tp in self.owned & self.consumer.assignment():  # mid-rebalance the two differ
            lag = self._partition_lag(tp)
            if lag is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)

    def _stale_observation(self, domain: str, sensor: str, site: str, silent: float, breach: bool) -> Observation:
        return Observation(f"{domain}.offline", sensor, domain, site, "major", round(silent, 1),
                           self.stale.minimum, breach, time.time_ns(), f"Sensor {sensor} at {site} silent",
                           f"{site} 传感器 {sensor} 离线", self.plugins[domain].offline_target)

    def _check_stale(self) -> None:
        """Report sensors that just fell silent: offline observations and a sensor_status point each."""
        new = self.stale.check(time.time())
        if not new:
            return
        bucket = self.settings.influx.bucket_compliance
        refused = self.influx.write(bucket, [
            f"sensor_status,domain={d},sensor={escape(s)},site={escape(site)} stale=1i,silent_s={silent!r} {time.time_ns()}"
            for d, s, site, silent in new])
        self._deliver(self._records([self._stale_observation(d, s, site, silent, True) for d, s, site, silent in new],
                                    self._refused(bucket, refused)))
        for d, s, site, silent in new:
            event(log, "sensor_stale", domain=d, sensor=s, site=site, silent_s=silent)
