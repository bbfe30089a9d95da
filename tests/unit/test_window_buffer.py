"""The open-window buffer and the grouping helpers the plug-ins share: same answers as the obvious
whole-array computation, whatever order and repetition the readings arrive in."""
from __future__ import annotations

import numpy as np

from processors.buffer import WindowBuffer
from processors.plugin import DAY_NS, factorize, group_means, site_groups
from schemas.batch import ReadingBatch

T0 = 1_795_000_000 * 10**9


def batch(sensors: list[str], ts: list[int], pm25: list[float]) -> ReadingBatch:
    n = len(ts)
    values = np.full((n, len(ReadingBatch("air", *[np.empty(0)] * 4).fields)), np.nan)
    values[:, 0] = pm25
    return ReadingBatch("air", np.array(sensors, dtype=object), np.array(["s"] * n, dtype=object),
                        np.array(ts, np.int64), values, np.full(n, -1), np.full(n, np.nan), np.full(n, np.nan),
                        np.full(n, "native", dtype=object), np.zeros(n, np.int64))


def rows(buffer: WindowBuffer) -> list[tuple[str, int, float]]:
    b = buffer.batch
    return sorted(zip(b.sensor_id.tolist(), b.ts.tolist(), b.values[:, 0].tolist()))


def test_a_repeated_reading_is_kept_once_with_its_last_copy_across_and_within_adds() -> None:
    buf = WindowBuffer(2)
    buf.add(batch(["a", "b", "a"], [T0, T0, T0 + 60], [1, 2, 3]))
    buf.add(batch(["a", "a", "c"], [T0, T0, T0 + 1], [10, 11, 4]))     # a@T0 twice in one add: the last wins
    buf.add(batch(["b"], [T0 + 10**12], [5]))                           # later, outside the others' span
    assert rows(buf) == [("a", T0, 11.0), ("a", T0 + 60, 3.0), ("b", T0, 2.0), ("b", T0 + 10**12, 5.0),
                         ("c", T0 + 1, 4.0)]


def test_days_past_the_horizon_leave_and_dropped_sensors_are_forgotten() -> None:
    buf = WindowBuffer(2)
    buf.add(batch(["a", "b"], [T0, T0], [1, 2]))
    buf.add(batch(["a"], [T0 + DAY_NS], [3]))
    assert len(buf.batch) == 3
    buf.add(batch(["a"], [T0 + 2 * DAY_NS], [4]))
    assert all(ts > T0 for _, ts, _ in rows(buf))
    buf.drop(["a"])
    assert rows(buf) == []
    buf.add(batch(["a"], [T0 + 2 * DAY_NS], [7]))  # a sensor dropped and seen again is buffered again
    assert rows(buf) == [("a", T0 + 2 * DAY_NS, 7.0)]


def test_factorize_and_site_groups_agree_with_numpy_unique() -> None:
    rng = np.random.default_rng(3)
    labels = np.array([f"site-{i}" for i in rng.integers(0, 7, 500)], dtype=object)
    uniq, inverse = factorize(labels)
    ref_uniq, ref_inverse = np.unique(labels.astype(str), return_inverse=True)
    assert uniq.tolist() == ref_uniq.tolist() and (inverse == ref_inverse).all()
    hours = rng.integers(0, 5, 500) * 3600 * 10**9 + T0
    pairs, groups = site_groups(labels, hours)
    assert pairs == sorted(set(zip(labels.tolist(), hours.tolist())))
    assert [pairs[g] for g in groups] == list(zip(labels.tolist(), hours.tolist()))
    values = rng.random((500, 2))
    values[::7, 1] = np.nan
    keys, means, counts = group_means(labels, values)
    for k, key in enumerate(keys):
        mine = values[labels == key]
        assert np.isclose(means[k, 0], mine[:, 0].mean()) and np.isclose(means[k, 1], np.nanmean(mine[:, 1]))
        assert counts[k, 1] == (~np.isnan(mine[:, 1])).sum()
