"""Property: whatever bytes arrive, every adapter answers with readings or a PayloadError, nothing else."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.adapters import FORMATS, PayloadError, TopicInfo, parse
from schemas.batch import validate

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _decode_everything(payload: bytes) -> None:
    for fmt in FORMATS:
        try:
            raws = parse(fmt, payload, TopicInfo(fmt, "air", "site-1", "s-1"))
        except PayloadError as exc:
            assert exc.reason
            continue
        validate(raws, fmt)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_give_only_typed_errors(payload: bytes) -> None:
    _decode_everything(payload)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_gives_only_typed_errors(doc: object) -> None:
    _decode_everything(json.dumps(doc).encode())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["ts", "values", "seq", "lat", "lon", "sensor_id", "site"]), json_values))
def test_arbitrary_native_shaped_objects_give_only_typed_errors(doc: dict) -> None:
    _decode_everything(json.dumps(doc).encode())
