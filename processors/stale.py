"""Silent sensors by wall clock, for the sensors of the partitions this processor owns.

A sensor's readings all arrive on one partition (the record key is the sensor id), so the detector
remembers each sensor's partition and forgets it when that partition is revoked: a processor that
loses partitions to another group member never reports their sensors as `offline`.
"""
from __future__ import annotations

from typing import Hashable

import numpy as np


class StaleDetector:
    """Wall-clock silence per sensor: stale after `factor` times its usual interval (at least `minimum` s)."""

    def __init__(self, minimum: float = 60.0, factor: float = 3.0) -> None:
        self.minimum, self.factor = minimum, factor
        # (domain, sensor) -> (last seen, usual interval, site, partition it arrives on)
        self.last: dict[tuple[str, str], tuple[float, float, str, Hashable]] = {}
        self.stale: set[tuple[str, str]] = set()

    def seen(self, domain: str, sensors: np.ndarray, sites: np.ndarray, partitions: dict[str, Hashable],
             now: float) -> list[tuple[str, str, str]]:
        """Record arrivals (`partitions`: sensor id -> the partition its records came from); returns
        (domain, sensor, site) of sensors that were stale and are back."""
        back = []
        for sensor, site in dict(zip(sensors.tolist(), sites.tolist())).items():
            key = (domain, sensor)
            prev = self.last.get(key)
            interval = self.minimum if prev is None else 0.8 * prev[1] + 0.2 * max(now - prev[0], 0.001)
            self.last[key] = (now, interval, site, partitions.get(sensor))
            if key in self.stale:
                self.stale.discard(key)
                back.append((domain, sensor, site))
        return back

    def forget(self, partitions: set[Hashable]) -> list[tuple[str, str]]:
        """Drop every sensor that arrives on one of `partitions` (revoked); returns their (domain, sensor)."""
        gone = [key for key, entry in self.last.items() if entry[3] in partitions]
        for key in gone:
            del self.last[key]
            self.stale.discard(key)
        return gone

    def pause(self, seconds: float) -> None:
        """The processor could not read for `seconds` (it waited for Kafka or InfluxDB): that silence
        is not the sensors', so every sensor's clock moves on by it."""
        self.last = {key: (seen + seconds, interval, site, partition)
                     for key, (seen, interval, site, partition) in self.last.items()}

    def check(self, now: float) -> list[tuple[str, str, str, float]]:
        """(domain, sensor, site, silent seconds) of sensors that just became stale."""
        new = []
        for key, (seen, interval, site, _) in self.last.items():
            silent = now - seen
            if key not in self.stale and silent > max(self.minimum, self.factor * interval):
                self.stale.add(key)
                new.append((key[0], key[1], site, silent))
        return new
