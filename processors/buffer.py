"""The open-window buffer: a domain's recent readings as columns, de-duplicated, in event time.

At-least-once delivery can repeat a reading; a (sensor, ts) pair is kept once (the last copy), so
window results do not depend on how often a reading was delivered.
"""
from __future__ import annotations

import numpy as np

from processors.plugin import local_day
from schemas.batch import ReadingBatch


class WindowBuffer:
    """Readings of the last `horizon_days` local days (relative to the newest reading)."""

    def __init__(self, horizon_days: int) -> None:
        self.horizon_days = horizon_days
        self.batch: ReadingBatch | None = None
        self._codes: dict[str, int] = {}

    def _code(self, sensors: np.ndarray) -> np.ndarray:
        codes = self._codes
        return np.fromiter((codes.setdefault(s, len(codes)) for s in sensors), np.int64, len(sensors))

    def add(self, new: ReadingBatch) -> None:
        """Merge `new` in, keep the last copy of each (sensor, ts), drop days past the horizon."""
        merged = new if self.batch is None else ReadingBatch.concat([self.batch, new])
        code = self._code(merged.sensor_id)
        position = np.arange(len(merged))
        order = np.lexsort((position, merged.ts, code))
        same_as_next = np.zeros(len(order), bool)
        same_as_next[:-1] = (code[order][1:] == code[order][:-1]) & (merged.ts[order][1:] == merged.ts[order][:-1])
        keep = np.sort(order[~same_as_next])
        merged = merged.take(keep)
        oldest = local_day(merged.ts).max() - self.horizon_days + 1
        self.batch = merged.take(local_day(merged.ts) >= oldest)

    def drop(self, sensors: list[str]) -> None:
        """Forget the readings of `sensors` (their partition went to another processor)."""
        if self.batch is not None and sensors:
            self.batch = self.batch.take(~np.isin(self.batch.sensor_id, sensors))

    def oldest_day(self) -> int | None:
        return None if self.batch is None or not len(self.batch) else int(local_day(self.batch.ts).min())
