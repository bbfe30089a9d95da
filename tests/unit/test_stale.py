"""The stale-sensor detector: silence by wall clock, for the sensors of the partitions still owned."""
from __future__ import annotations

import numpy as np

from processors.stale import StaleDetector


def arrivals(detector: StaleDetector, sensors: list[str], partition: int, now: float) -> None:
    detector.seen("air", np.array(sensors, dtype=object), np.array(["zhonghan"] * len(sensors), dtype=object),
                  {s: partition for s in sensors}, now)


def test_a_silent_sensor_becomes_stale_once_and_comes_back() -> None:
    detector = StaleDetector(minimum=60)
    arrivals(detector, ["a"], 0, now=0)
    assert detector.check(179) == []   # three times the assumed interval (the minimum) first
    assert [s for _, s, _, _ in detector.check(181)] == ["a"]
    assert detector.check(300) == []   # reported once
    back = detector.seen("air", np.array(["a"], dtype=object), np.array(["zhonghan"], dtype=object), {"a": 0}, 310)
    assert back == [("air", "a", "zhonghan")]


def test_sensors_of_revoked_partitions_are_forgotten_and_never_reported_offline() -> None:
    detector = StaleDetector(minimum=60)
    arrivals(detector, ["a", "b"], 0, now=0)
    arrivals(detector, ["c"], 1, now=0)
    assert sorted(detector.forget({0})) == [("air", "a"), ("air", "b")]
    assert [s for _, s, _, _ in detector.check(1000)] == ["c"]


def test_a_stale_sensor_whose_partition_is_revoked_is_not_reported_back_by_the_next_owner_s_silence() -> None:
    detector = StaleDetector(minimum=60)
    arrivals(detector, ["a"], 3, now=0)
    assert len(detector.check(200)) == 1
    detector.forget({3})
    assert detector.stale == set() and detector.last == {}


def test_time_the_processor_spent_waiting_for_its_dependencies_is_not_the_sensors_silence() -> None:
    detector = StaleDetector(minimum=60)
    arrivals(detector, ["a"], 0, now=0)
    detector.pause(500)                # e.g. InfluxDB was down for 500 s
    assert detector.check(600) == []
    assert len(detector.check(700)) == 1
