"""Migration to site keys: copy the open days' records that are off their site's partition onto it.

`python -m processors.rekey [--domains all] [--apply]` (docs/scaling.md, section 3). Records written
before the bridge keyed them by site sit on their sensor's partition; processors store their
readings raw but window only the readings on their site's partition, so that one member owns each
site. For each `telemetry.<domain>` topic this reads every record from the start of the domain's
open windows (the domain's horizon back from the newest record's event time) to the end offsets at
start, and produces a copy of
each record whose site is not at home on its partition, keyed by its site, with the same value and
timestamp. Without --apply it only counts. Running it twice is harmless: the copies repeat readings
already counted once (a repeated (sensor, ts) counts once).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from kafka import TopicPartition

from infra.clients import kafka_consumer, kafka_producer
from infra.settings import Settings
from processors.plugin import day_start, local_day
from processors.registry import processors
from processors.service import site_partition


def rekey(settings: Settings, domain: str, horizon_days: int, *, apply: bool, now_ns: int | None = None) -> dict:
    """Counts (records read, off their site's partition, copied) for one domain's open days."""
    topic = settings.kafka.telemetry_topic(domain)
    consumer = kafka_consumer(settings, None, enable_auto_commit=False)
    producer = kafka_producer(settings) if apply else None
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            raise SystemExit(f"no topic {topic}: create the topics first (deploy/native/kafka.sh topics)")
        ends = consumer.end_offsets(parts)
        newest = _newest(settings, parts, ends) or (now_ns or time.time_ns()) // 10**6
        consumer.assign(parts)
        since_ms = int(day_start(int(local_day([newest * 10**6])[0]) - horizon_days + 1)) // 10**6
        starts = consumer.offsets_for_times({tp: since_ms for tp in parts})
        todo = {}
        for tp in parts:
            found = starts.get(tp)
            if found is not None and found.offset < ends[tp]:
                consumer.seek(tp, found.offset)
                todo[tp] = ends[tp]
            else:
                consumer.pause(tp)
        read = off = 0
        futures = []
        while todo:
            for tp, records in consumer.poll(timeout_ms=1000, max_records=5000).items():
                for r in records:
                    if r.offset >= todo.get(tp, -1):
                        continue
                    read += 1
                    site = _site(r.value)
                    if site is None or site_partition(site, len(parts)) == tp.partition:
                        continue
                    off += 1
                    if producer is not None:
                        futures.append(producer.send(topic, key=site.encode(), value=r.value, timestamp_ms=r.timestamp))
                if records and records[-1].offset + 1 >= todo.get(tp, 0):
                    todo.pop(tp, None)
                    consumer.pause(tp)
        if producer is not None:
            producer.flush(120)
            for f in futures:
                f.get(timeout=10)
        return {"domain": domain, "read": read, "off_site_partition": off, "copied": off if apply else 0}
    finally:
        consumer.close()
        if producer is not None:
            producer.close()


def _newest(settings: Settings, parts: list[TopicPartition], ends: dict) -> int | None:
    """The newest record timestamp (ms, event time) among the last record of each partition: the open
    windows end there, as a processor's watermark does."""
    found: list[int] = []
    for tp in parts:
        if ends[tp] == 0:
            continue
        consumer = kafka_consumer(settings, None)
        try:
            consumer.assign([tp])
            consumer.seek(tp, ends[tp] - 1)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                records = consumer.poll(timeout_ms=500, max_records=1).get(tp, [])
                if records:
                    found.append(records[-1].timestamp)
                    break
        finally:
            consumer.close()
    return max(found, default=None)


def _site(value: bytes | None) -> str | None:
    """The site of a telemetry record (column or one-reading format), None if it is not one."""
    try:
        site = json.loads(value or b"").get("site")
    except (ValueError, AttributeError):
        return None
    return site if isinstance(site, str) else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", default="all", help="comma-separated domains, or 'all'")
    parser.add_argument("--apply", action="store_true", help="produce the copies (default: only count)")
    args = parser.parse_args(argv)
    plugins = processors()
    names = list(plugins) if args.domains == "all" else [d.strip() for d in args.domains.split(",") if d.strip()]
    unknown = [d for d in names if d not in plugins]
    if unknown:
        print(f"error: no processor for {', '.join(unknown)}; known: {', '.join(plugins)}", file=sys.stderr)
        return 2
    settings = Settings()
    for name in names:
        print(json.dumps(rekey(settings, name, plugins[name].horizon_days, apply=args.apply)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
