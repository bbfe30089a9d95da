"""The alert router's InfluxDB backlog: refused lines are dropped and counted, an outage keeps them all."""
from __future__ import annotations

import urllib3

from alerts.router import AlertRouter, RouterMetrics
from infra.influxwrite import InfluxWriteError
from infra.settings import Settings


class FakeInflux:
    """Refuses lines containing 'bad' with 422, or everything with 503 while `down`."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.down = False
        self.calls = 0

    def write(self, bucket: str, lines: list[str]) -> None:
        self.calls += 1
        if self.down:
            raise InfluxWriteError(503, "unavailable", urllib3.HTTPHeaderDict())
        if any("bad" in line for line in lines):
            raise InfluxWriteError(422, "partial write: field type conflict", urllib3.HTTPHeaderDict())
        self.written += lines


def router(influx: FakeInflux, lines: list[str]) -> AlertRouter:
    r = AlertRouter.__new__(AlertRouter)
    r.settings, r.metrics, r.influx = Settings(), RouterMetrics(), influx
    r.influx_lines, r._influx_retry_at, r._influx_delay = list(lines), 0.0, 1.0
    return r


def test_refused_lines_are_dropped_and_counted_the_others_written() -> None:
    influx = FakeInflux()
    r = router(influx, ["a 1", "bad 2", "c 3", "bad 4"] + [f"x {n}" for n in range(1000)])
    r._write_influx()
    assert sorted(influx.written) == sorted(["a 1", "c 3"] + [f"x {n}" for n in range(1000)])
    assert influx.calls < 40, "refused lines are found by bisection, not one write per line"
    assert r.influx_lines == [] and r.metrics.influx_refused._value.get() == 2


def test_an_outage_keeps_every_line_for_later() -> None:
    influx = FakeInflux()
    influx.down = True
    r = router(influx, ["a 1", "bad 2", "c 3"])
    r._write_influx()
    assert r.influx_lines == ["a 1", "bad 2", "c 3"] and r._influx_retry_at > 0   # kept, in order
    influx.down, r._influx_retry_at = False, 0.0
    r._write_influx()
    assert sorted(influx.written) == ["a 1", "c 3"] and r.influx_lines == []
