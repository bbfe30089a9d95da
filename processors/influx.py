"""The processor's InfluxDB side: writes and Flux queries with their failures sorted by class.

- 400 and 422 (InfluxDB 2.7 answers 422 for unprocessable points, e.g. a field type conflict) are
  refusals of some lines: the batch is bisected until the refused lines are found; the others are
  written and the refused ones returned with InfluxDB's message, for the caller to dead-letter.
  413 (request too large) is bisected the same way.
- 429, 5xx, other 4xx (token, bucket) and connection errors are the service being away: waited out
  with exponential backoff (Retry-After honoured), for as long as it takes, each retry logged and
  counted. The caller supplies the wait, so that it can keep its Kafka group membership meanwhile.

Writes go through infra.influxwrite (v1 /write with the service's write-only credential, else
/api/v2/write), queries through the v2 client. Measured on influxd 2.7.12, gzip bodies, the v1 /write
and the v2 /api/v2/write answer the same (status, JSON body {"code", "message"}):
- a line that does not parse among good ones: 400 "invalid", message "unable to parse '<line>': <why>";
  NOTHING of the batch is written (no partial write), so bisecting finds the line and writes the rest;
- a field type conflict: 422 "unprocessable entity", "partial write: field type conflict: ... dropped=1";
  the other lines ARE written (rewriting them while bisecting is idempotent);
- a timestamp outside int64: 400 "invalid" like any unparsable line;
- a 30 MB body (plain or gzip): 204, influxd 2.7.12 has no body limit; 413 comes from proxies, split;
- wrong password or no credential: 401 "unauthorized"; a bucket that is missing or that the v1
  credential may not write: 404 "no dbrp mapping found" (both: configuration, waited out and logged);
- the v1 credential on v2 DELETE /api/v2/buckets/<id> and POST /api/v2/delete: 401.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException

from infra.influxwrite import REFUSED, InfluxWriteError, InfluxWriter
from infra.logs import event
from processors.metrics import ProcessorMetrics

log = logging.getLogger("smartcity.processor")

TOO_LARGE = 413               # the request is too big: split it
REASON_LIMIT = 1000           # characters of InfluxDB's message kept per refused line
MAX_BACKOFF = 15.0
ANSWERS = (ApiException, InfluxWriteError)   # InfluxDB answered (status, body, headers): the rest is unreachable

Wait = Callable[[float, str], None]   # wait(seconds, dependency): sleep while keeping the consumer alive


class QueryRefused(Exception):
    """InfluxDB answered 400 to a Flux query: the query itself is wrong (a plug-in bug), retrying cannot help."""


@dataclass
class Refused:
    """One line InfluxDB refused, with its reason."""

    line: str
    reason: str


def status_of(exc: Exception) -> int | None:
    """The HTTP status InfluxDB answered with, None when it did not answer (connection, timeout)."""
    if not isinstance(exc, ANSWERS):
        return None
    return exc.status or None


def error_class(exc: Exception) -> str:
    """The metrics class of a failed InfluxDB request (see processors/metrics.py)."""
    status = status_of(exc)
    if status is None:
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

    def __init__(self, client: InfluxDBClient, writer: InfluxWriter, metrics: ProcessorMetrics, wait: Wait) -> None:
        self.client = client
        self.writer = writer
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
                self.writer.write(bucket, lines)
                self.metrics.write_latency.labels(bucket).observe(time.monotonic() - started)
                return None, ""
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                status = status_of(exc)
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
                if status_of(exc) == 400:
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
