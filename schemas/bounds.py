"""Numbers at the boundary: what a payload may carry (int64 integers, finite doubles), with reasons.

JSON has no limits of its own: Python's json turns 1e309 into infinity and keeps integers of hundreds
of digits exactly. Every number that enters a reading passes one of these checks first, so NumPy and
Kafka never meet a value they cannot hold.
"""
from __future__ import annotations

import math
import reprlib

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 2, 3, 3, 40, 40, 40


def show(value: object) -> str:
    """A value for a reason, at most 40 characters (an integer of thousands of digits included)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**36:
        digits = len(str(abs(value))) if value.bit_length() < 14_000 else "thousands of"
        return f"an integer of {digits} digits"
    text = _SHORT.repr(value)  # bounded work too: a 16 MB nested array is not rendered to cut 40 characters
    return text if len(text) <= 40 else text[:37] + "..."


def number_problem(value: object) -> str | None:
    """Why `value` is not a usable reading number (None when it is): an int inside int64 or a finite
    float. A boolean is not a number (JSON keeps them apart): only a flag field turns it into 0/1,
    before this check."""
    kind = type(value)
    if kind is float and value - value == 0.0 or kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
        return None  # the hot path: inf - inf and nan - nan are nan
    if isinstance(value, bool):
        return f"is the boolean {str(value).lower()}, not a number"
    if isinstance(value, int):
        return f"is {show(value)}, outside the 64-bit integer range"
    if isinstance(value, float):
        if math.isnan(value):
            return "is NaN, not a number"
        return "is beyond ±1.8e308: the JSON number overflowed to infinity"
    if value is None:
        return "must be a finite number, got null: leave the field out when there is no value"
    if kind is str:
        return f"must be a finite number, got the string {show(value)}: write it as a JSON number, without quotes"
    what = {dict: "an object ", list: "an array "}.get(kind, "")
    return f"must be a finite number, got {what}{show(value)}: a field takes one JSON number"


def counter_problem(value: object, bits: int = 63) -> str | None:
    """Why `value` is not a sequence number / frame counter of `bits` bits (None when it is): an int in
    0..2**bits-1 (63: an int64 that is not negative; LoRaWAN frame counters are uint32, 32)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a non-negative integer, got {show(value)}"
    if not 0 <= value < 2**bits:
        return f"must be a non-negative integer below 2**{bits}, got {show(value)}"
    return None
