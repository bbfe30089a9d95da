"""Line protocol: tags escaped one way everywhere, raw readings one line each with their values."""
from __future__ import annotations

import json

from processors.plugin import Point, escape
from processors.service import raw_lines
from schemas.batch import ReadingBatch


def test_escape_covers_the_characters_line_protocol_reserves() -> None:
    assert escape(r"a b,c=d\e") == r"a\ b\,c\=d\\e"


def test_point_line_sorts_tags_escapes_and_types_fields() -> None:
    line = Point("indicator", {"scope": "district", "domain": "air quality"},
                 {"value": 33.5, "days": 3, "ok": True, "name": 'PM"2.5'}, 10).line()
    assert line == 'indicator,domain=air\\ quality,scope=district value=33.5,days=3i,ok=true,name="PM\\"2.5" 10'


def test_raw_lines_write_each_reading_with_its_present_values() -> None:
    records = [json.dumps({"sensor_id": "s1", "site": "st-1", "ts": [5, 6], "source": "native",
                           "values": {"pm25": [12.5, None], "pm10": [None, 3]}}).encode()]
    batch, errors = ReadingBatch.from_records("air", records)
    assert errors == [] and raw_lines(batch) == ["air,sensor=s1,site=st-1,source=native pm25=12.5 5",
                                                 "air,sensor=s1,site=st-1,source=native pm10=3.0 6"]
    batch.sensor_id[:], batch.site[:] = "s 1", "st,1"   # tags are escaped, whoever made the columns
    assert raw_lines(batch)[0] == "air,sensor=s\\ 1,site=st\\,1,source=native pm25=12.5 5"
