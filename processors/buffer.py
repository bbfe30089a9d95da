"""The open-window buffer: a domain's recent readings as columns, de-duplicated, in event time.

At-least-once delivery can repeat a reading; a (sensor, ts) pair is kept once (the last copy), so
window results do not depend on how often a reading was delivered. Adding costs what the new rows
cost: sensors are numbered once (a code column beside the rows), and only buffered rows inside the
new rows' time span are compared with them.
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
        self._sensor = np.empty(0, np.int64)     # sensor code of each buffered row
        self._codes: dict[str, int] = {}

    def _code(self, sensors: np.ndarray) -> np.ndarray:
        codes = self._codes
        return np.fromiter(map(lambda s: codes.setdefault(s, len(codes)), sensors.tolist()), np.int64, len(sensors))

    def add(self, new: ReadingBatch) -> None:
        """Merge `new` in, keep the last copy of each (sensor, ts), drop days past the horizon."""
        if not len(new):
            return
        code = self._code(new.sensor_id)
        keep = _last_copies(code, new.ts)
        new, code = new.take(keep), code[keep]
        if self.batch is None:
            self.batch, self._sensor = new, code
        else:
            span = np.flatnonzero((self.batch.ts >= new.ts.min()) & (self.batch.ts <= new.ts.max()))
            if len(span):  # buffered rows the new ones may repeat: the new copy wins
                both_code = np.concatenate([self._sensor[span], code])
                both_ts = np.concatenate([self.batch.ts[span], new.ts])
                last = _last_copies(both_code, both_ts)
                repeated = np.ones(len(span), bool)
                repeated[last[last < len(span)]] = False
                if repeated.any():
                    stay = np.ones(len(self.batch), bool)
                    stay[span[repeated]] = False
                    self._take(stay)
            self.batch = ReadingBatch.concat([self.batch, new])
            self._sensor = np.concatenate([self._sensor, code])
        days = local_day(self.batch.ts)
        oldest = int(days.max()) - self.horizon_days + 1
        if days.min() < oldest:
            self._take(days >= oldest)

    def _take(self, rows: np.ndarray) -> None:
        assert self.batch is not None
        self.batch, self._sensor = self.batch.take(rows), self._sensor[rows]

    def drop(self, sensors: list[str]) -> None:
        """Forget the readings of `sensors` (their partition went to another processor)."""
        if self.batch is not None and sensors:
            self._take(~np.isin(self.batch.sensor_id, sensors))

    def oldest_day(self) -> int | None:
        return None if self.batch is None or not len(self.batch) else int(local_day(self.batch.ts).min())


def _last_copies(code: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Row indices, ascending, of the last copy of each (code, ts) pair."""
    position = np.arange(len(ts))
    order = np.lexsort((position, ts, code))
    same_as_next = np.zeros(len(order), bool)
    same_as_next[:-1] = (code[order][1:] == code[order][:-1]) & (ts[order][1:] == ts[order][:-1])
    return np.sort(order[~same_as_next])
