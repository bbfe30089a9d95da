"""Timestamps as UTC nanoseconds, bounded: RFC 3339 strings (any fraction, kept to ns) or epoch seconds.

Every event time that enters the pipeline passes `parse_ts` with a `TimeWindow` (by default from
2010-01-01T00:00:00Z to now + 300 s; the lower edge is the ingest setting `earliest_ts`): a number
outside it is rejected with a reason, whatever form it came in, so that nothing downstream meets a
time that int64 nanoseconds cannot hold, nor a clock that was reset. A reason below the lower edge
names the reset it looks like (Unix epoch, GPS epoch or week rollover, RTC 2000-01-01, a GNSS
receiver 1,024 weeks behind); the first day after each of those instants is refused even above it.

RFC 3339 strings are read by its §5.6 grammar, whole (no surrounding whitespace): `T` or `t` (or, as
§5.6's note allows, a space) between date and time, an offset `Z`/`z` or `±hh:mm` with hh <= 23 and
mm <= 59, and second 60 only for a leap second that was inserted (§5.7: 23:59:60 UTC, on the days of
the IERS table). A leap second is counted as the first instant of the next day, as POSIX time does.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache

from schemas.bounds import INT64_MAX, show

_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))", re.ASCII
)
_NO_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?", re.ASCII)
_BARE_OFFSET = re.compile(r"[+-]\d{4}", re.ASCII)  # '+0800': ISO 8601's basic format, not RFC 3339
_DURATION = re.compile(r"(\d{1,12})(?:\.(\d+))?s", re.ASCII)
GPS_EPOCH_NS = 315_964_800 * 10**9  # 1980-01-06T00:00:00Z
GPS_LEAP_NS = 18 * 10**9            # GPS - UTC since 2017-01-01
GPS_ROLLOVER_NS = 1024 * 7 * 86_400 * 10**9  # a GNSS week number counts 1,024 weeks (19.6 years), then wraps
EARLIEST_NS = 1_262_304_000 * 10**9  # 2010-01-01T00:00:00Z: below it, every usual reset value (see RESETS)
_DAY_NS = 86_400 * 10**9
RESETS = (  # (instant, what a clock showing it shortly after has suffered)
    (0, "it counts from the Unix epoch 1970-01-01: the clock was reset or never set; set it (NTP, or the network's time)"),
    (GPS_EPOCH_NS, "it counts from the GPS epoch 1980-01-06: a GNSS receiver without a fix or with its week number reset; "
                   "wait for a fix or update its firmware"),
    (GPS_EPOCH_NS + GPS_ROLLOVER_NS, "it counts from the first GPS week rollover 1999-08-22: a GNSS receiver that "
                                     "lost 1,024 weeks; update its firmware"),
    (946_684_800 * 10**9, "it counts from 2000-01-01, the usual RTC reset value: the clock lost its power; "
                           "set it and check its backup battery"),
    (GPS_EPOCH_NS + 2 * GPS_ROLLOVER_NS, "it counts from the second GPS week rollover 2019-04-07: a GNSS receiver "
                                         "without a fix or with its week number reset; wait for a fix or update its firmware"),
)
_RESETS_END = max(instant for instant, _ in RESETS) + _DAY_NS  # later times skip the reset check: the hot path
_LEAP_DAYS = frozenset(date.fromisoformat(d) for d in (  # IERS: a second 23:59:60 UTC was inserted at the end of
    "1972-06-30 1972-12-31 1973-12-31 1974-12-31 1975-12-31 1976-12-31 1977-12-31 1978-12-31 1979-12-31 "
    "1981-06-30 1982-06-30 1983-06-30 1985-06-30 1987-12-31 1989-12-31 1990-12-31 1992-06-30 1993-06-30 "
    "1994-06-30 1995-12-31 1997-06-30 1998-12-31 2005-12-31 2008-12-31 2012-06-30 2015-06-30 2016-12-31").split())
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
    """`ns` as an int when inside `bounds` and not in the first day after a reset instant (`RESETS`);
    ValueError naming `value` and the fault when not."""
    lo, hi = bounds or TimeWindow().bounds()
    if ns > hi:
        raise ValueError(_future_reason(value, ns, lo, hi))
    if ns < lo or ns < _RESETS_END and any(instant <= ns < instant + _DAY_NS for instant, _ in RESETS):
        raise ValueError(_past_reason(value, ns, lo, hi))
    return ns if isinstance(ns, int) else int(round(ns))


def _past_reason(value: object, ns: int | float, lo: int, hi: int) -> str:
    """Why a time below the window (or just after a reset instant) is refused, naming the fault it shows."""
    fault = next((why for instant, why in reversed(RESETS) if instant <= ns < instant + 366 * _DAY_NS), None)
    if fault is None and abs(ns - (hi - GPS_ROLLOVER_NS)) < 8 * _DAY_NS:
        fault = "it is 1,024 weeks (19.6 years) behind now: a GNSS receiver whose week number rolled over; update its firmware"
    when = f" ({format_ts(int(ns))})" if -2**62 < ns < 2**62 and not isinstance(value, str) else ""
    if fault:
        return f"timestamp {show(value)}{when} is refused: {fault}"
    return (f"timestamp {show(value)}{when} is before {format_ts(lo)}, the lower edge of the accepted window "
            "(ingest setting earliest_ts, SMARTCITY_INGEST__EARLIEST_TS): the device clock is not set; lower "
            "that setting only to load an older archive")


def parse_gps_duration(value: object, bounds: tuple[int, int] | None = None) -> int:
    """UTC ns from a LoRaWAN gateway's time since the GPS epoch, as protobuf JSON writes a Duration
    ("1384034040.512s"); GPS time has no leap seconds, so the 18 s UTC has gained since 1980 come off."""
    m = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"time since the GPS epoch must look like '1384034040.512s', got {show(value)}")
    ns = GPS_EPOCH_NS + int(m.group(1)) * 10**9 + int((m.group(2) or "0")[:9].ljust(9, "0")) - GPS_LEAP_NS
    return _within(ns, value, bounds)


def _rfc3339_ns(value: str) -> int:
    """UTC ns of an RFC 3339 date-time (§5.6 grammar, §5.7 leap seconds); ValueError says what is wrong."""
    m = _RFC3339.fullmatch(value)
    if not m:
        raise ValueError(_rfc3339_problem(value))
    day, hh, mm, ss, frac, zulu, sign, oh, om = m.groups()
    if int(hh) > 23 or int(mm) > 59 or int(ss) > 60:
        raise ValueError(f"timestamp {show(value)} is not a valid time of day: hour 00-23, minute 00-59, second "
                         "00-59 (60 only for a leap second), RFC 3339 §5.6")
    if not zulu and (int(oh) > 23 or int(om) > 59):
        raise ValueError(f"timestamp {show(value)} has the offset {sign}{oh}:{om}: its hours must be 00-23 and its "
                         "minutes 00-59 (RFC 3339 §5.6 time-numoffset), e.g. +08:00")
    try:
        midnight = _day_epoch(day)
    except ValueError as exc:
        raise ValueError(f"timestamp {show(value)} is not a valid date: {exc}") from None
    offset = 0 if zulu else (1 if sign == "+" else -1) * (int(oh) * 3600 + int(om) * 60)
    seconds = midnight + int(hh) * 3600 + int(mm) * 60 + int(ss) - offset
    if ss == "60" and not (seconds % 86_400 == 0 and _utc_day(seconds - 1) in _LEAP_DAYS):
        raise ValueError(f"timestamp {show(value)} has second 60, but no leap second was inserted then: RFC 3339 "
                         "§5.7 allows 23:59:60 UTC only at the end of a day the IERS added one (the last: 2016-12-31)")
    return seconds * 10**9 + int((frac or "0")[:9].ljust(9, "0"))


def _rfc3339_problem(value: str) -> str:
    """What keeps `value` from being an RFC 3339 date-time, said so that the device can be fixed."""
    if value != value.strip():
        return f"timestamp {show(value)} has whitespace around it: send the RFC 3339 string alone (RFC 3339 §5.6)"
    head = _NO_OFFSET.match(value)
    if head and head.end() == len(value):
        return f"timestamp {show(value)} has no UTC offset; add Z or +08:00 (RFC 3339 §4.4, §5.6)"
    if head and _BARE_OFFSET.fullmatch(value, head.end()):
        return (f"timestamp {show(value)} writes its offset without a colon; RFC 3339 §5.6 wants +hh:mm "
                "(e.g. +08:00, not +0800)")
    return f"timestamp {show(value)} is not RFC 3339 (e.g. 2026-05-01T08:00:00Z or 2026-05-01T16:00:00+08:00)"


@lru_cache(maxsize=4096)
def _day_epoch(day: str) -> int:
    """Epoch seconds of a date's UTC midnight, validated by `date` (readings of one message share a few
    days: the calendar arithmetic is done once per day, not once per reading)."""
    return (date.fromisoformat(day) - _EPOCH_DAY).days * 86_400


def _utc_day(seconds: int) -> date:
    return date.fromordinal(_EPOCH_DAY.toordinal() + seconds // 86_400)


_EPOCH_DAY = date(1970, 1, 1)


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
