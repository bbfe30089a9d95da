"""The telemetry.<domain> record: one message's readings of one sensor as columns, decoded back to
the same rows; the one-reading records of earlier bridges still decode; a record nobody could have
made right is refused with its reason, never a crash."""
from __future__ import annotations

import json

import numpy as np

from schemas.batch import ReadingBatch, record_readings

T = 1_790_000_000 * 10**9


def columns(n: int, sensors: list[str]) -> ReadingBatch:
    values = np.full((n, len(ReadingBatch("air", *[np.empty(0)] * 4).fields)), np.nan)
    values[:, 0] = np.arange(n) + 0.5
    values[::2, 1] = 7.0
    seq = np.full(n, -1)
    seq[1:2] = 9
    return ReadingBatch("air", np.array(sensors, dtype=object), np.array(["st-1"] * n, dtype=object),
                        T + np.arange(n, dtype=np.int64) * 10**9, values, seq, np.full(n, np.nan), np.full(n, np.nan),
                        np.full(n, "native", dtype=object), np.full(n, T, np.int64))


def test_one_record_per_message_and_sensor_run_gives_back_the_same_rows() -> None:
    sensors, message_of = ["a", "a", "b", "a", "a", "a"], np.array([0, 0, 0, 0, 1, 1])
    batch = columns(6, sensors)
    records = list(batch.records(message_of))
    assert [first for *_, first in records] == [0, 2, 3, 4]       # a run per message and sensor
    assert {k for k, *_ in records} == {b"st-1"}                   # keyed by site: one partition holds the site
    assert [ts for _, _, ts, _ in records] == [(T + 10**9) // 10**6, (T + 2 * 10**9) // 10**6,
                                              (T + 3 * 10**9) // 10**6, (T + 5 * 10**9) // 10**6]
    first = json.loads(records[0][1])
    assert first["values"]["pm25"] == [0.5, 1.5] and first["values"]["pm10"] == [7.0, None]
    assert first["seq"] == [None, 9] and "lat" not in first and "seq" not in json.loads(records[3][1])
    back, errors = ReadingBatch.from_records("air", [v for _, v, _, _ in records])
    assert errors == []
    assert back.readings() == batch.readings()


def test_records_of_the_one_reading_format_still_decode_beside_column_records() -> None:
    old = json.dumps({"sensor_id": "x", "domain": "air", "site": "st-2", "ts": T, "seq": None, "lat": 36.1,
                      "lon": None, "values": {"pm25": 3.0}, "source": "senml", "received_at": T}).encode()
    new = next(columns(1, ["a"]).records())[1]
    batch, errors = ReadingBatch.from_records("air", [old, new])
    assert errors == [] and batch.sensor_id.tolist() == ["x", "a"] and batch.source.tolist() == ["senml", "native"]
    assert np.isnan(batch.lon).all() and batch.lat[0] == 36.1 and batch.column("pm25").tolist() == [3.0, 0.5]
    assert [r["sensor_id"] for r in record_readings(old) + record_readings(new)] == ["x", "a"]


def test_hostile_records_are_refused_each_with_its_reason_and_the_good_ones_kept() -> None:
    good = next(columns(1, ["a"]).records())[1]
    hostile = {
        b'{"sensor_id": "s", "ts": [1, 2], "values": {"pm25": [1]}}': "columns as long as ts",
        b'{"sensor_id": "s", "ts": [1, true], "values": {}}': "list of positive int64",
        b'{"sensor_id": "s", "ts": [1], "values": {"pm25": ["1"]}}': "not numbers",
        b'{"sensor_id": "s", "ts": [1], "values": {"pm25": [1e999]}}': "not numbers",
        b'{"sensor_id": "s", "ts": [1], "values": {"pm25": [1]}, "seq": [-1]}': "seq",
        b'{"sensor_id": "s", "ts": [1], "values": {"pm25": [1]}, "lat": [true]}': "lat",
        b'{"sensor_id": "s", "ts": 1, "site": ["a", "b"], "values": {"pm25": 1}}': "site ['a', 'b'] is not an id",
        b'{"sensor_id": "s\\n", "ts": [1], "values": {"pm25": [1]}}': "is not an id",
        b'{"sensor_id": "s", "domain": "fire", "ts": [1], "values": {"pm25": [1]}}': "in a air topic",
        b'[1]': "not a JSON object",
        b'{"sensor_id": "s", "ts": 1': "undecodable record",
    }
    batch, errors = ReadingBatch.from_records("air", [good, *hostile])
    assert batch.sensor_id.tolist() == ["a"] and batch.values.shape == (1, len(batch.fields))
    assert len(errors) == len(hostile)
    for error, reason in zip(errors, hostile.values()):
        assert reason in error, (error, reason)
