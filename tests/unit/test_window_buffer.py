"""The window state and the grouping helpers the plug-ins share: same answers as the obvious
whole-array computation, whatever order, split and repetition the readings arrive in."""
from __future__ import annotations

import numpy as np

from processors.buffer import Nearest, Sums, WindowState
from processors.plugin import DAY_NS, day_start, factorize, group_means, hour_start, local_day, site_groups
from schemas.batch import ReadingBatch

T0 = 1_795_000_000 * 10**9


def batch(sensors: list[str], ts: list[int], pm25: list[float]) -> ReadingBatch:
    n = len(ts)
    values = np.full((n, len(ReadingBatch("air", *[np.empty(0)] * 4).fields)), np.nan)
    values[:, 0] = pm25
    return ReadingBatch("air", np.array(sensors, dtype=object), np.array(["s"] * n, dtype=object),
                        np.array(ts, np.int64), values, np.full(n, -1), np.full(n, np.nan), np.full(n, np.nan),
                        np.full(n, "native", dtype=object), np.zeros(n, np.int64))


def state() -> WindowState:
    """pm25 sums per (sensor, site, hour), as the air plug-in keeps them."""
    return WindowState("air", 2, hours=Sums(hour_start, lambda b: b.values[:, :1]))


def cells(s: WindowState) -> list[tuple[str, int, float, int]]:
    """(site, hour, pm25 sum, count) of every window the state holds."""
    w = s.hours.site_windows(np.unique(local_day(s.hours.start)))
    return [(site, hour, float(w.sums[i, 0]), int(w.counts[i, 0])) for i, (site, hour) in enumerate(w.pairs)]


def test_a_repeated_reading_counts_once_across_and_within_adds() -> None:
    s = state()
    assert len(s.add(batch(["a", "b", "a"], [T0, T0, T0 + 60], [1, 2, 3]))) == 3
    fresh = s.add(batch(["a", "a", "c"], [T0, T0, T0 + 1], [10, 11, 4]))   # a@T0 again, twice: counted once, first copy
    assert fresh.sensor_id.tolist() == ["c"]
    assert cells(s) == [("s", hour_start(np.array([T0]))[0], 10.0, 4)]


def test_days_past_the_horizon_leave_and_dropped_sensors_are_forgotten() -> None:
    s = state()
    s.add(batch(["a", "b"], [T0, T0], [1, 2]))
    s.add(batch(["a"], [T0 + DAY_NS], [3]))
    assert sum(c for *_, c in cells(s)) == 3 and s.oldest_day() == local_day(np.array([T0]))[0]
    s.add(batch(["a"], [T0 + 2 * DAY_NS], [4]))
    assert s.oldest_day() == local_day(np.array([T0 + DAY_NS]))[0] and sum(c for *_, c in cells(s)) == 2
    s.add(batch(["a"], [T0], [9]))      # a day past the horizon: not kept (the service recomputes it from raw)
    assert s.oldest_day() == local_day(np.array([T0 + DAY_NS]))[0]
    s.drop(["a"])
    assert cells(s) == [] and s.oldest_day() is None
    s.add(batch(["a"], [T0 + 2 * DAY_NS], [7]))  # a sensor dropped and seen again is counted again
    assert [c[2:] for c in cells(s)] == [(7.0, 1)]


def test_window_sums_do_not_depend_on_order_splits_or_repeats() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    sensors = [f"s{i}" for i in rng.integers(0, 40, n)]
    ts = (T0 + rng.integers(0, 2 * 24 * 60, n) * 60 * 10**9).tolist()
    pm = [(hash((s_, t)) % 100_000) / 1000 for s_, t in zip(sensors, ts)]   # a redelivery repeats the values
    whole = state()
    whole.add(batch(sensors, ts, pm))
    again = state()
    order = rng.permutation(n).tolist() + rng.integers(0, n, 500).tolist()   # shuffled, with repeats
    for part in np.array_split(np.array(order), 17):
        again.add(batch([sensors[i] for i in part], [ts[i] for i in part], [pm[i] for i in part]))
    assert cells(whole) == cells(again)            # exactly: sums of quantized values are exact
    first = {}
    for s_, t, v in zip(sensors, ts, pm):
        first.setdefault((s_, t), v)
    hours = hour_start(np.array([t for _, t in first], np.int64))
    for site, hour, total, count in cells(whole):
        mine = [v for (_, t), v, h in zip(first, first.values(), hours) if h == hour]
        assert count == len(mine) and abs(total - sum(mine)) < 1e-6 * len(mine)


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


def test_the_noon_observation_does_not_depend_on_arrival_order() -> None:
    """Fire's state: per zone and day the reading nearest local noon (ties: the earlier, then the
    sensor id), whichever order and split the readings came in."""
    noon = day_start(local_day(np.array([T0])))[0] + 12 * 3600 * 10**9
    ts = [noon - 3600 * 10**9, noon + 3600 * 10**9, noon + 600 * 10**9, noon - 600 * 10**9, noon + 4 * 3600 * 10**9]
    sensors, values = ["b", "a", "b", "a", "a"], [1.0, 2.0, 3.0, 4.0, 5.0]
    picks = set()
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        part = Nearest(12 * 3600 * 10**9, 3 * 3600 * 10**9, ("pm25",), lambda b: ~np.isnan(b.column("pm25")))
        s = WindowState("air", 2, noon=part)
        for i in order:
            s.add(batch([sensors[i]], [ts[i]], [values[i]]))
        picks.add(tuple(part.per_site().items()))
    assert picks == {((("s", int(local_day(np.array([T0]))[0])), (4.0,)),)}   # 11:50 beats 12:10: the earlier
