"""Timestamps as UTC nanoseconds: RFC 3339 strings (up to ns precision, offset required) or epoch seconds."""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})?$"
)
MIN_NS = 946_684_800 * 10**9  # 2000-01-01: anything older is a device clock that was never set


def parse_ts(value: object) -> int:
    """UTC nanoseconds from an RFC 3339 string or a number of epoch seconds; ValueError says why not."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"timestamp must be an RFC 3339 string or epoch seconds, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"timestamp is not finite: {value!r}")
        ns = int(round(value * 1e9)) if isinstance(value, float) else value * 10**9
    elif isinstance(value, str):
        m = _RFC3339.match(value.strip())
        if not m:
            raise ValueError(f"timestamp {value!r} is not RFC 3339 (e.g. 2026-05-01T08:00:00Z)")
        date, clock, frac, offset = m.groups()
        if offset is None:
            raise ValueError(f"timestamp {value!r} has no UTC offset; add Z or +08:00")
        offset = "+00:00" if offset in "Zz" else offset
        try:
            seconds = datetime.fromisoformat(f"{date}T{clock}{offset}").timestamp()
        except ValueError as exc:
            raise ValueError(f"timestamp {value!r} is not a valid date: {exc}") from None
        ns = int(seconds) * 10**9 + int((frac or "0").ljust(9, "0"))
    else:
        raise ValueError(f"timestamp must be an RFC 3339 string or epoch seconds, got {type(value).__name__}")
    if ns < MIN_NS:
        raise ValueError(f"timestamp {value!r} is before 2000-01-01: the device clock is not set")
    return ns


def format_ts(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, for people (the CLI)."""
    seconds, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"
