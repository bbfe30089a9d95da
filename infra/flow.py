"""Lag and throughput per stage, for `smartcity stack status` and the demo: what each consumer group
has not committed yet (from Kafka's offsets) and what each stage reported in the last minutes (the
`pipeline` measurement the bridge and the processors write into the compliance bucket)."""
from __future__ import annotations

from collections import defaultdict

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from infra.clients import influx_client
from infra.settings import Settings


def end_offsets(settings: Settings, topics: list[str], per_partition: bool = False) -> dict:
    """End offset per topic (summed over partitions), or per partition."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka.bootstrap)
    try:
        out: dict = {}
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            ends = consumer.end_offsets(parts) if parts else {}
            if per_partition:
                out.update(ends)
            else:
                out[topic] = sum(ends.values())
        return out
    finally:
        consumer.close()


def group_lag(settings: Settings, group: str, topics: list[str]) -> int:
    """Records in `topics` that consumer group `group` has not committed yet."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    ends = end_offsets(settings, topics, per_partition=True)
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())


def group_lags(settings: Settings) -> dict[str, dict[str, int]]:
    """Uncommitted records per consumer group and topic, for every group with committed offsets on
    this deployment's topics (its topic prefix)."""
    prefix = settings.kafka.topic_prefix
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    try:
        groups = [g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups()]
        committed = admin.list_group_offsets(groups) if groups else {}
    finally:
        admin.close()
    mine = {g: {tp: o.offset for tp, o in offsets.items() if tp.topic.startswith(prefix) and o.offset >= 0}
            for g, offsets in committed.items()}
    topics = sorted({tp.topic for offsets in mine.values() for tp in offsets})
    ends = end_offsets(settings, topics, per_partition=True) if topics else {}
    lags: dict[str, dict[str, int]] = {}
    for group, offsets in mine.items():
        for tp, offset in offsets.items():
            lags.setdefault(group, defaultdict(int))[tp.topic] += max(ends.get(tp, offset) - offset, 0)
    return {g: dict(t) for g, t in sorted(lags.items())}


def stage_rates(settings: Settings, minutes: int = 5) -> list[tuple[str, str, str, float]]:
    """(service, instance or domain, what, per second) over the last `minutes`: the bridges' running
    totals (received, forwarded, dead-lettered) as rates, the processors' records per checkpoint summed."""
    flux = (f'from(bucket: "{settings.influx.bucket_compliance}") |> range(start: -{minutes}m) '
            '|> filter(fn: (r) => r._measurement == "pipeline")')
    with influx_client(settings, timeout_ms=10_000) as client:
        tables = client.query_api().query(flux)
    series: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for table in tables:
        for r in table.records:
            who = r.values.get("instance") or r.values.get("domain") or ""
            series[(r.values.get("service", ""), who, r.get_field())].append((r.get_time().timestamp(), r.get_value()))
    out = []
    for (service, who, what), points in sorted(series.items()):
        if service == "bridge" and what in ("received", "forwarded", "deadlettered") and len(points) > 1:
            (t0, v0), (t1, v1) = min(points), max(points)
            out.append((service, who, what, max(v1 - v0, 0) / (t1 - t0) if t1 > t0 else 0.0))
        elif service == "processor" and what == "records":
            out.append((service, who, "records", sum(v for _, v in points) / (minutes * 60)))
    return out


def flow_table(settings: Settings) -> str:
    """Consumer lag per group and topic, and each stage's rate over the last five minutes, as text."""
    lines = ["", "CONSUMER GROUP                  TOPICS  LAG (records)  MOST BEHIND"]
    try:
        lags = group_lags(settings)
        lines += [f"{group[:31]:31} {len(topics):>6} {sum(topics.values()):>14,}  "
                  f"{max(topics, key=topics.__getitem__) if any(topics.values()) else '-'}"
                  for group, topics in lags.items()] or ["(no consumer group has committed yet)"]
    except Exception as exc:  # noqa: BLE001 - status must print what it can
        lines.append(f"(Kafka: {type(exc).__name__}: {str(exc)[:120]})")
    lines += ["", "STAGE      WHO                             WHAT           PER SECOND (last 5 min)"]
    try:
        rates = stage_rates(settings)
        lines += [f"{service:10} {who[:31]:31} {what:14} {rate:>10,.1f}" for service, who, what, rate in rates] or [
            "(no stage reported in the last 5 minutes)"]
    except Exception as exc:  # noqa: BLE001 - status must print what it can
        lines.append(f"(InfluxDB: {type(exc).__name__}: {str(exc)[:120]})")
    return "\n".join(lines) + "\n"
