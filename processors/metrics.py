"""Prometheus metrics of one processor: throughput, lag per partition, latencies and errors by class.

Served by `smartcity process --metrics-port N` (like the bridge's). Own registry, so several
processors (tests, the demo) can live in one Python process.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# Error classes (the `class` label of processor_errors_total), one per way a dependency can fail:
#   influx_rejected      InfluxDB refused lines (400/422); those lines are dead-lettered, the rest written
#   influx_throttled     InfluxDB answered 429; retried after Retry-After or backoff
#   influx_server        InfluxDB answered 5xx; retried with backoff
#   influx_client        another 4xx (401/403/404: token or bucket wrong); retried, operator must fix
#   influx_unreachable   connection refused, reset or timed out; retried with backoff
#   query_failed         a Flux history query failed (any of the above); retried
#   kafka_produce        a produce future failed or send() could not enqueue; resent
#   kafka_commit         an offset commit failed; retried (partitions lost meanwhile are dropped)
#   kafka_metadata       committed/offsets_for_times/beginning_offsets failed while positioning; retried
#   kafka_gap            a fetch skipped offsets; the partition is sought back to the expected offset
#   undecodable          a Kafka record that is not a reading envelope; dead-lettered
#   plugin               a domain plug-in raised; its results for that poll are skipped, raw data kept
ERROR_CLASSES = ("influx_rejected", "influx_throttled", "influx_server", "influx_client", "influx_unreachable",
                 "query_failed", "kafka_produce", "kafka_commit", "kafka_metadata", "kafka_gap", "undecodable",
                 "plugin")


@dataclass
class ProcessorMetrics:
    """The processor's counters, gauges and histograms."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.records = Counter("processor_records", "Kafka records consumed (rate: records/s)", ["domain"], registry=r)
        self.readings = Counter("processor_readings", "readings written raw", ["domain"], registry=r)
        self.points = Counter("processor_points", "compliance points written", registry=r)
        self.observations = Counter("processor_observations", "rule observations produced to alerts.events",
                                    registry=r)
        self.deadlettered = Counter("processor_deadlettered", "records or lines dead-lettered", ["reason"],
                                    registry=r)
        self.errors = Counter("processor_errors", "failures by class (see processors/metrics.py)", ["class"],
                              registry=r)
        self.lag = Gauge("processor_consumer_lag", "records behind the partition's end", ["topic", "partition"],
                         registry=r)
        self.waiting = Gauge("processor_waiting", "1 while waiting for a dependency to come back", ["dependency"],
                             registry=r)
        self.rebalances = Counter("processor_rebalances", "assignment changes handled", registry=r)
        self.rewound = Counter("processor_rewound_records", "records replayed to rebuild open windows", registry=r)
        self.write_latency = Histogram("processor_write_latency_seconds", "InfluxDB write request time", ["bucket"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.query_latency = Histogram("processor_query_latency_seconds", "InfluxDB Flux query time",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.checkpoint_latency = Histogram("processor_checkpoint_seconds", "poll handled to offsets committed",
                                            buckets=LATENCY_BUCKETS, registry=r)
        for name in ERROR_CLASSES:
            self.errors.labels(name)
        for dependency in ("influxdb", "kafka"):
            self.waiting.labels(dependency).set(0)
