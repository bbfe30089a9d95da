"""The processor service: Kafka consumer group -> columns -> domain plug-ins -> InfluxDB and alerts.

Per poll: decode the records of each domain into columns, write them raw (`telemetry` bucket), merge
them into the open-window buffer, let the domain's plug-in recompute the touched windows, write the
results (`compliance` bucket), produce the rule observations to `alerts.events`, and only then commit
the offsets. Writes are idempotent (same measurement + tags + time overwrite), so a replay after a
crash gives the same numbers.

Restart: on partition assignment each partition is sought back to the start of the oldest open window
(`offsets_for_times` on the event-time record timestamps the bridge sets), never past the committed
offset, so the buffer is rebuilt from the log. Readings older than the buffer are still stored raw
and their day is recomputed from the raw bucket.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
from influxdb_client import WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from kafka import ConsumerRebalanceListener, TopicPartition

from infra.clients import influx_client, kafka_consumer, kafka_producer
from infra.logs import event
from infra.settings import Settings
from processors.buffer import WindowBuffer
from processors.plugin import DAY_NS, DomainProcessor, Observation, day_start, escape, local_day
from processors.registry import processors
from schemas.batch import ReadingBatch
from schemas.envelope import DeadLetter
from schemas.registry import domain as get_domain
from schemas.thresholds import load_plan

log = logging.getLogger("smartcity.processor")


def raw_lines(batch: ReadingBatch) -> list[str]:
    """Line protocol for raw readings: measurement = domain, tags site/sensor/source, one field per value."""
    names = batch.fields
    present = ~np.isnan(batch.values)
    lines = []
    rows = batch.values.tolist()  # Python floats: their repr is line protocol's number syntax
    for i in range(len(batch)):
        fields = ",".join(f"{names[j]}={rows[i][j]!r}" for j in np.flatnonzero(present[i]))
        lines.append(f"{batch.domain},sensor={escape(batch.sensor_id[i])},site={escape(batch.site[i])},"
                     f"source={batch.source[i]} {fields} {int(batch.ts[i])}")
    return lines


class StaleDetector:
    """Wall-clock silence per sensor: stale after `factor` times its usual interval (at least `minimum` s)."""

    def __init__(self, minimum: float = 60.0, factor: float = 3.0) -> None:
        self.minimum, self.factor = minimum, factor
        self.last: dict[tuple[str, str], tuple[float, float, str]] = {}   # (domain, sensor) -> (seen, interval, site)
        self.stale: set[tuple[str, str]] = set()

    def seen(self, domain: str, sensors: np.ndarray, sites: np.ndarray, now: float) -> list[tuple[str, str, str]]:
        """Record arrivals; returns (domain, sensor, site) of sensors that were stale and are back."""
        back = []
        for sensor, site in dict(zip(sensors.tolist(), sites.tolist())).items():
            key = (domain, sensor)
            prev = self.last.get(key)
            interval = self.minimum if prev is None else 0.8 * prev[1] + 0.2 * max(now - prev[0], 0.001)
            self.last[key] = (now, interval if prev else self.minimum, site)
            if key in self.stale:
                self.stale.discard(key)
                back.append((domain, sensor, site))
        return back

    def check(self, now: float) -> list[tuple[str, str, str, float]]:
        """(domain, sensor, site, silent seconds) of sensors that just became stale."""
        new = []
        for key, (seen, interval, site) in self.last.items():
            silent = now - seen
            if key not in self.stale and silent > max(self.minimum, self.factor * interval):
                self.stale.add(key)
                new.append((key[0], key[1], site, silent))
        return new


class _Rewind(ConsumerRebalanceListener):
    """Notes newly assigned partitions; the poll loop rewinds them (kafka-python runs this callback
    on its IO thread, where the blocking calls a rewind needs are not allowed)."""

    def __init__(self, service: "ProcessorService") -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.service.to_rewind.update(assigned)


class ProcessorService:
    """Consumes telemetry.<domain> for the given domains in one consumer group."""

    def __init__(self, settings: Settings, domains: list[str], *, group: str = "processors",
                 stale_after: float = 120.0) -> None:
        plugins = processors()
        missing = [d for d in domains if d not in plugins]
        if missing:
            raise ValueError(f"no processor for {', '.join(missing)}; known: {', '.join(plugins)}")
        self.settings = settings
        self.group = group
        self.topics = {settings.kafka.telemetry_topic(d): d for d in domains}
        self.influx = influx_client(settings, timeout_ms=60_000)
        self.writer = self.influx.write_api(write_options=SYNCHRONOUS)
        self.query = self.influx.query_api()
        plan = load_plan()
        bucket = settings.influx.bucket_compliance
        self.plugins: dict[str, DomainProcessor] = {d: plugins[d](plan, self.history, bucket) for d in domains}
        self.buffers = {d: WindowBuffer(p.horizon_days) for d, p in self.plugins.items()}
        self.producer = kafka_producer(settings, linger_ms=5)
        self.consumer = kafka_consumer(settings, group, max_poll_records=5000)
        self.stale = StaleDetector(minimum=stale_after)
        self.stopping = threading.Event()
        self.totals: dict[str, int] = defaultdict(int)
        self.to_rewind: set[TopicPartition] = set()

    # -- reading earlier results -------------------------------------------------------------------

    def history(self, flux: str) -> list[dict[str, Any]]:
        """Rows of a Flux query (with `_time` as UTC ns), for plug-ins' long-horizon indicators."""
        rows = []
        for table in self.query.query(flux):
            for record in table.records:
                row = dict(record.values)
                if row.get("_time") is not None:
                    row["_time"] = int(row["_time"].timestamp()) * 10**9 + row["_time"].microsecond * 1000
                rows.append(row)
        return rows

    def _watermark(self, domain: str) -> int | None:
        rows = self.history(
            f'from(bucket: "{self.settings.influx.bucket_raw}") |> range(start: 0) '
            f'|> filter(fn: (r) => r._measurement == "{domain}") |> keep(columns: ["_time"]) '
            '|> group() |> max(column: "_time")')
        return max((r["_time"] for r in rows), default=None)

    def rewind(self, assigned: list[TopicPartition]) -> None:
        """Seek each new partition back to the start of its domain's oldest open window."""
        watermarks: dict[str, int | None] = {}  # one InfluxDB scan per domain, not per partition
        for tp in assigned:
            domain = self.topics[tp.topic]
            committed = self.consumer.committed(tp)
            if domain not in watermarks:
                watermarks[domain] = self._watermark(domain)
            watermark = watermarks[domain]
            if watermark is None or committed is None:
                continue  # nothing processed yet: the committed offset (or earliest) is right
            open_from = int(day_start(local_day(np.array([watermark]))[0] - self.plugins[domain].horizon_days + 1))
            found = self.consumer.offsets_for_times({tp: max(open_from // 10**6, 0)}).get(tp)
            target = committed if found is None else min(found.offset, committed)
            self.consumer.seek(tp, target)
            event(log, "rewind", topic=tp.topic, partition=tp.partition, committed=committed, seek=target)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Poll, process, commit until stop(); then commit what was processed and exit."""
        self.consumer.subscribe(list(self.topics), listener=_Rewind(self))
        last_check = time.monotonic()
        try:
            while not self.stopping.is_set():
                polled = self.consumer.poll(timeout_ms=500, max_records=5000)
                if self.to_rewind:
                    rewound, self.to_rewind = set(self.to_rewind), set()
                    self.rewind(sorted(rewound))
                    # what this poll fetched for them is fetched again from the rewound position
                    polled = {tp: rs for tp, rs in polled.items() if tp not in rewound}
                if polled:
                    self.process(polled)
                    self.consumer.commit()
                if time.monotonic() - last_check >= 2.0:
                    last_check = time.monotonic()
                    self._check_stale()
        finally:
            self.consumer.close(autocommit=False)
            self.producer.flush(30)
            self.producer.close(10)
            self.influx.close()
            event(log, "processor_stopped", **self.totals)

    def stop(self) -> None:
        self.stopping.set()

    def process(self, polled: dict[TopicPartition, list]) -> None:
        """One poll's records: raw write, windows, results, observations (then the caller commits)."""
        started = time.monotonic()
        by_domain: dict[str, list[bytes]] = defaultdict(list)
        lag: dict[str, int] = defaultdict(int)
        for tp, records in polled.items():
            by_domain[self.topics[tp.topic]].extend(r.value for r in records)
            highwater = self.consumer.highwater(tp)
            if highwater is not None and records:
                lag[self.topics[tp.topic]] += max(highwater - records[-1].offset - 1, 0)
        observations: list[Observation] = []
        points: list[str] = []
        for domain, values in by_domain.items():
            batch, errors = ReadingBatch.from_records(domain, values)
            for reason in errors:
                event(log, "undecodable_record", logging.ERROR, domain=domain, reason=reason)
            if not len(batch):
                continue
            self._write(self.settings.influx.bucket_raw, raw_lines(batch))
            for d, s, site in self.stale.seen(domain, batch.sensor_id, batch.site, time.time()):
                observations.append(self._stale_observation(d, s, site, 0.0, False))
            plugin, buffer = self.plugins[domain], self.buffers[domain]
            buffer.add(batch)
            days = np.unique(local_day(batch.ts))
            oldest = buffer.oldest_day()
            late = days[days < oldest] if oldest is not None else days[:0]
            recent = days[days >= oldest] if oldest is not None else days
            result = plugin.compute(buffer.batch, recent)
            for day in late:  # too late for the buffer: recompute that day from the raw bucket
                stored = self._load_day(domain, int(day))
                if stored is not None:
                    extra = plugin.compute(stored, np.array([day]))
                    result.points.extend(extra.points)
                    result.observations.extend(extra.observations)
            points.extend(p for p in (pt.line() for pt in result.points) if p)
            observations.extend(result.observations)
            self.totals[f"{domain}_readings"] += len(batch)
        self._write(self.settings.influx.bucket_compliance, points)
        self._observe(observations)
        elapsed = time.monotonic() - started
        self.totals["points"] += len(points)
        self._write(self.settings.influx.bucket_compliance, [
            f"pipeline,service=processor,domain={d} records={len(v)}i,lag={lag[d]}i,batch_seconds={elapsed!r} {time.time_ns()}"
            for d, v in by_domain.items()])

    def _load_day(self, domain: str, day: int) -> ReadingBatch | None:
        """A whole local day of raw readings from InfluxDB, as columns (for very late data)."""
        start = int(day_start(day))
        rows = self.history(
            f'from(bucket: "{self.settings.influx.bucket_raw}") |> range(start: time(v: {start - DAY_NS}), '
            f'stop: time(v: {start + DAY_NS})) |> filter(fn: (r) => r._measurement == "{domain}") '
            '|> pivot(rowKey: ["_time", "sensor", "site", "source"], columnKey: ["_field"], valueColumn: "_value")')
        if not rows:
            return None
        fields = get_domain(domain).fields
        docs = [json.dumps({"sensor_id": r["sensor"], "site": r["site"], "ts": r["_time"], "source": r["source"],
                            "values": {f: r[f] for f in fields if r.get(f) is not None}}).encode() for r in rows]
        return ReadingBatch.from_records(domain, docs)[0]

    def _write(self, bucket: str, lines: list[str]) -> None:
        """Write until InfluxDB accepts (offsets are not committed before that)."""
        if not lines:
            return
        delay = 1.0
        while True:
            try:
                self.writer.write(bucket=bucket, record=lines, write_precision=WritePrecision.NS)
                return
            except ApiException as exc:
                if exc.status == 400:  # refused data never succeeds: keep it, with InfluxDB's reason
                    self._dead_letter(bucket, lines, str(exc.body)[:2000])
                    return
                error: Exception = exc
            except Exception as exc:  # noqa: BLE001 - any other failure means: not safe yet, try again
                error = exc
            if self.stopping.is_set():
                raise error
            event(log, "influx_write_failed", logging.WARNING, bucket=bucket, lines=len(lines),
                  error=f"{type(error).__name__}: {str(getattr(error, 'body', error))[:300]}", retry_in=delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _dead_letter(self, bucket: str, lines: list[str], reason: str) -> None:
        record = DeadLetter.of(f"influxdb/{bucket}", "\n".join(lines).encode(), f"InfluxDB refused the write: {reason}")
        self.producer.send(self.settings.kafka.deadletter_topic, key=bucket.encode(),
                           value=record.model_dump_json().encode()).get(timeout=60)
        event(log, "influx_write_refused", logging.ERROR, bucket=bucket, lines=len(lines), reason=reason[:300])

    def _observe(self, observations: list[Observation]) -> None:
        topic = self.settings.kafka.alerts_topic
        for o in observations:
            self.producer.send(topic, key=o.key(), value=json.dumps(o.to_dict(), ensure_ascii=False).encode())
        self.producer.flush(60)

    def _stale_observation(self, domain: str, sensor: str, site: str, silent: float, breach: bool) -> Observation:
        return Observation(f"{domain}.offline", sensor, domain, site, "major", round(silent, 1),
                           self.stale.minimum, breach, time.time_ns(), f"Sensor {sensor} at {site} silent",
                           f"{site} 传感器 {sensor} 离线", "plan l.192: 联网管理 (parking); data completeness")

    def _check_stale(self) -> None:
        now = time.time()
        new = self.stale.check(now)
        if not new:
            return
        self._observe([self._stale_observation(d, s, site, silent, True) for d, s, site, silent in new])
        self._write(self.settings.influx.bucket_compliance, [
            f"sensor_status,domain={d},sensor={escape(s)},site={escape(site)} stale=1i,silent_s={silent!r} {time.time_ns()}"
            for d, s, site, silent in new])
        for d, s, site, silent in new:
            event(log, "sensor_stale", domain=d, sensor=s, site=site, silent_s=silent)
