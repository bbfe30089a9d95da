"""The processor's InfluxDB side: writes and Flux queries with their failures sorted by class.

- 400 and 422 (InfluxDB 2.7 answers 422 for unprocessable points, e.g. a field type conflict) are
  refusals of some lines: the batch is bisected until the refused lines are found; the others are
  written and the refused ones returned with InfluxDB's message, for the caller to dead-letter.
  413 (request too large) is bisected the same way.
- 429, 5xx, other 4xx (token, bucket) and connection errors are the service being away: waited out
  with exponential backoff (Retry-After honoured), for as long as it takes, each retry logged and
  counted. The caller supplies the wait, so that it can keep its Kafka group membership meanwhile.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from infra.logs import event
from processors.metrics import ProcessorMetrics

log = logging.getLogger("smartcity.processor")

REFUSED = (400, 422)          # these lines are wrong: find them, keep them, write the rest
TOO_LARGE = 413               # the request is too big: split it
REASON_LIMIT = 1000           # characters of InfluxDB's message kept per refused line
MAX_BACKOFF = 15.0

Wait = Callable[[float, str], None]   # wait(seconds, dependency): sleep while keeping the consumer alive


class QueryRefused(Exception):
    """InfluxDB answered 400 to a Flux query: the query itself is wrong (a plug-in bug), retrying cannot help."""


@dataclass
class Refused:
    """One line InfluxDB refused, with its reason."""

    line: str
    reason: str


def error_class(exc: Exception) -> str:
    """The metrics class of a failed InfluxDB request (see processors/metrics.py)."""
    status = getattr(exc, "status", None)
    if not isinstance(exc, ApiException) or not status:
        return "influx_unreachable"
    if status == 429:
        return "influx_throttled"
    if status >= 500:
        return "influx_server"
    return "influx_rejected" if status in REFUSED else "influx_client"


def describe(exc: Exception, limit: int = 300) -> str:
    """`Type: message` of a failure, InfluxDB's own body when it has one, bounded in size."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return f"{type(exc).__name__}({getattr(exc, 'status', '') or ''}): {str(body or exc)}"[:limit]


def retry_after(exc: Exception) -> float | None:
    """Seconds from a 429/503 Retry-After header, when InfluxDB sent one."""
    headers = getattr(exc, "headers", None) or {}
    try:
        return float(headers.get("Retry-After"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class InfluxGateway:
    """Writes and queries that either succeed, report refused lines, or wait until InfluxDB is back."""

    def __init__(self, client: InfluxDBClient, metrics: ProcessorMetrics, wait: Wait) -> None:
        self.client = client
        self.writer = client.write_api(write_options=SYNCHRONOUS)
        self.reader = client.query_api()
        self.metrics = metrics
        self.wait = wait

    def write(self, bucket: str, lines: list[str]) -> list[Refused]:
        """Write every line InfluxDB accepts; return the refused ones with InfluxDB's reason."""
        refused: list[Refused] = []
        parts = [lines] if lines else []
        while parts:
            part = parts.pop()
            status, reason = self._write_until_answered(bucket, part)
            if status is None:
                continue
            if len(part) == 1:
                refused.append(Refused(part[0], reason))
                continue
            mid = len(part) // 2
            parts += [part[mid:], part[:mid]]   # bisect: the first half is tried next
        if refused:
            self.metrics.errors.labels("influx_rejected").inc(len(refused))
            event(log, "influx_lines_refused", logging.ERROR, bucket=bucket, lines=len(lines), refused=len(refused),
                  reason=refused[0].reason[:300])
        return refused

    def _write_until_answered(self, bucket: str, lines: list[str]) -> tuple[int | None, str]:
        """(None, "") when written; (status, InfluxDB's message) when the lines are refused. Waits out
        everything else."""
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                self.writer.write(bucket=bucket, record=lines, write_precision=WritePrecision.NS)
                self.metrics.write_latency.labels(bucket).observe(time.monotonic() - started)
                return None, ""
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                status = getattr(exc, "status", None) if isinstance(exc, ApiException) else None
                if status in REFUSED or status == TOO_LARGE:
                    return status, describe(exc, REASON_LIMIT)
                delay = self._backoff("influx_write", exc, delay, bucket=bucket, lines=len(lines))

    def query(self, flux: str) -> list[dict[str, Any]]:
        """Rows of a Flux query (with `_time` as UTC ns), retried until InfluxDB answers."""
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                tables = self.reader.query(flux)
                self.metrics.query_latency.observe(time.monotonic() - started)
                break
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                if isinstance(exc, ApiException) and exc.status == 400:
                    self.metrics.errors.labels("query_failed").inc()
                    raise QueryRefused(f"InfluxDB refused the Flux query ({describe(exc)}); fix the query: "
                                       f"{flux[:300]}") from exc
                self.metrics.errors.labels("query_failed").inc()
                delay = self._backoff("influx_query", exc, delay)
        rows = []
        for table in tables:
            for record in table.records:
                row = dict(record.values)
                if row.get("_time") is not None:
                    row["_time"] = int(row["_time"].timestamp()) * 10**9 + row["_time"].microsecond * 1000
                rows.append(row)
        return rows

    def _backoff(self, what: str, exc: Exception, delay: float, **fields: Any) -> float:
        """Count, log and wait out one failed request; returns the next delay (doubling up to MAX_BACKOFF)."""
        kind = error_class(exc)
        self.metrics.errors.labels(kind).inc()
        pause = min(retry_after(exc) or delay, MAX_BACKOFF)
        event(log, f"{what}_failed", logging.WARNING, error_class=kind, error=describe(exc), retry_in=pause, **fields)
        self.wait(pause, "influxdb")
        return min(delay * 2, MAX_BACKOFF)
