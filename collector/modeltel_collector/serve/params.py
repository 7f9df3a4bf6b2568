"""Query-string numbers for the JSON APIs, checked before they reach SQLite or a comparison.

A number that is not finite, or outside what the store can hold (SQLite's INTEGER is a signed 64-bit
integer; durations and times are stored in nanoseconds), is a client error with a one-line reason: it used
to raise OverflowError deep in the store, and the connection closed with no answer at all.
"""

from __future__ import annotations

import math

MAX_NS = (1 << 63) - 1  # the largest time or duration, in nanoseconds, the trace store holds
MAX_MS = MAX_NS / 1e6
MAX_US = MAX_NS / 1e3


def number(text: str, name: str, *, lo: float, hi: float) -> float:
    """``text`` as a float in [lo, hi]; ValueError (a 400) otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text[:40]!r}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a finite number between {lo:g} and {hi:g}, got {text[:40]!r}")
    return value


def integer(text: str, name: str, *, lo: int, hi: int) -> int:
    """``text`` as an integer in [lo, hi]; ValueError (a 400) otherwise (no silent clamping)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text[:40]!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer between {lo} and {hi}, got {text[:40]!r}")
    return value
