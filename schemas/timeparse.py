"""Timestamps as UTC nanoseconds, bounded: RFC 3339 strings (any fraction, kept to ns) or epoch seconds.

Every event time that enters the pipeline passes `parse_ts` with a `TimeWindow` (by default from
2000-01-01T00:00:00Z to now + 300 s): a number outside it is rejected with a reason, whatever form it
came in, so that nothing downstream meets a time that int64 nanoseconds cannot hold.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache

from schemas.bounds import INT64_MAX, show

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?$", re.ASCII
)
_DURATION = re.compile(r"^(\d{1,12})(?:\.(\d+))?s$", re.ASCII)
GPS_EPOCH_NS = 315_964_800 * 10**9  # 1980-01-06T00:00:00Z
GPS_LEAP_NS = 18 * 10**9            # GPS - UTC since 2017-01-01
EARLIEST_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z: older is a device clock that was never set
_SCALES = ((10**3, "milliseconds", "divide by 1000"), (10**6, "microseconds", "divide by 1,000,000"),
           (10**9, "nanoseconds", "divide by 1,000,000,000"))


@dataclass(frozen=True)
class TimeWindow:
    """The event times accepted: from `earliest_ns` to the wall clock (or `now_ns`) + `future_skew_ns`."""

    earliest_ns: int = EARLIEST_NS
    future_skew_ns: int = 300 * 10**9
    now_ns: int | None = None  # fixed "now" (tests, replays); None: the wall clock when bounds() is called

    def bounds(self) -> tuple[int, int]:
        """(lowest, highest) accepted UTC ns, both inside int64."""
        now = self.now_ns if self.now_ns is not None else time.time_ns()
        return self.earliest_ns, min(now + self.future_skew_ns, INT64_MAX)


def parse_ts(value: object, bounds: tuple[int, int] | None = None) -> int:
    """UTC ns from an RFC 3339 string or epoch seconds (int or float), inside `bounds`
    (default: `TimeWindow().bounds()`); ValueError says why not and what to send instead."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"timestamp must be an RFC 3339 string or epoch seconds, got {value!r}")
    if isinstance(value, int):
        ns: int | float = value * 10**9
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"timestamp is not a finite number: {value!r}")
        if value.is_integer() or abs(value) > 1e12:
            ns = int(value) * 10**9 if abs(value) < 1e300 else value * 1e9
        else:  # the shortest decimal that reads back as this float: 1.276020076001e9 is ...076.001 s, not ...0759999
            ns = int(Decimal(repr(value)).scaleb(9).to_integral_value())
    elif isinstance(value, str):
        ns = _rfc3339_ns(value)
    else:
        raise ValueError(f"timestamp must be an RFC 3339 string or epoch seconds, got {type(value).__name__}")
    return _within(ns, value, bounds)


def _within(ns: int | float, value: object, bounds: tuple[int, int] | None) -> int:
    """`ns` as an int when inside `bounds`; ValueError naming `value` when not."""
    lo, hi = bounds or TimeWindow().bounds()
    if ns < lo:
        raise ValueError(f"timestamp {show(value)} is before {format_ts(lo)}: the device clock is not set")
    if ns > hi:
        raise ValueError(_future_reason(value, ns, lo, hi))
    return ns if isinstance(ns, int) else int(round(ns))


def parse_gps_duration(value: object, bounds: tuple[int, int] | None = None) -> int:
    """UTC ns from a LoRaWAN gateway's time since the GPS epoch, as protobuf JSON writes a Duration
    ("1384034040.512s"); GPS time has no leap seconds, so the 18 s UTC has gained since 1980 come off."""
    m = _DURATION.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"time since the GPS epoch must look like '1384034040.512s', got {show(value)}")
    ns = GPS_EPOCH_NS + int(m.group(1)) * 10**9 + int((m.group(2) or "0")[:9].ljust(9, "0")) - GPS_LEAP_NS
    return _within(ns, value, bounds)


def _rfc3339_ns(value: str) -> int:
    m = _RFC3339.match(value.strip())
    if not m:
        raise ValueError(f"timestamp {show(value)} is not RFC 3339 (e.g. 2026-05-01T08:00:00Z)")
    date, hhmm, sec, frac, offset = m.groups()
    if offset is None:
        raise ValueError(f"timestamp {show(value)} has no UTC offset; add Z or +08:00")
    if int(sec) > 60:  # 60: RFC 3339's leap second, counted as the first instant of the next minute
        raise ValueError(f"timestamp {show(value)} is not a valid date: second must be in 0..59")
    try:
        minute = _minute_epoch(date, hhmm, "+00:00" if offset in "Zz" else offset)
    except ValueError as exc:
        raise ValueError(f"timestamp {show(value)} is not a valid date: {exc}") from None
    return (minute + int(sec)) * 10**9 + int((frac or "0")[:9].ljust(9, "0"))


@lru_cache(maxsize=4096)
def _minute_epoch(date: str, hhmm: str, offset: str) -> int:
    """Epoch seconds of a minute, validated by datetime (readings of one message share a few minutes:
    the calendar arithmetic is done once per minute, not once per reading)."""
    moment = datetime.fromisoformat(f"{date}T{hhmm}:00{offset}")
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // _SECOND


_SECOND = datetime(1970, 1, 1, 0, 0, 1) - datetime(1970, 1, 1)


def _future_reason(value: object, ns: int | float, lo: int, hi: int) -> str:
    if isinstance(value, (int, float)):
        for scale, unit, fix in _SCALES:
            if lo <= (ns // scale if isinstance(ns, int) else ns / scale) <= hi:
                return (f"timestamp {show(value)} looks like epoch {unit}; send epoch seconds ({fix}, "
                        f"here {value // scale if isinstance(value, int) else value / scale}) or an RFC 3339 string")
    ahead = (min(ns, 10**30) - hi) / 1e9
    how_far = f"{ahead:,.0f} s" if ahead < 1e9 else "more than 30 years"
    return (f"timestamp {show(value)} is {how_far} later than the accepted window allows "
            f"(until {format_ts(hi)}): it is in the future; check the device clock")


def format_ts(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds, for people (the CLI and reasons)."""
    seconds, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"
