"""Readable values, one way: Prometheus template functions in annotations, the same units for thresholds.

An annotation prints ``100ms`` and ``12%`` (``humanizeDuration``, ``humanizePercentage``), never
``0.09999999``; the threshold beside it is formatted here the same way, so both read alike.
"""

from __future__ import annotations

__all__ = ["human", "value_template"]

_TEMPLATES = {
    "s": "{{ $value | humanizeDuration }}",
    "ratio": "{{ $value | humanizePercentage }}",
    "%": '{{ printf "%.1f" $value }} %',
    "/s": "{{ $value | humanize }}/s",
    "°C": '{{ printf "%.0f" $value }} °C',
    "": "{{ $value | humanize }}",
}


def value_template(unit: str) -> str:
    """The Go template that prints an alert's ``$value`` in ``unit`` (s, ratio, %, /s, °C or none)."""
    return _TEMPLATES[unit]


def human(value: float, unit: str) -> str:
    """``value`` as the matching template would print it: 0.2 s -> 200ms, 0.05 ratio -> 5%."""
    if unit == "s":
        return f"{value * 1000:g}ms" if value < 1 else f"{value:g}s"
    if unit == "ratio":
        return f"{value * 100:g}%"
    if unit in ("%", "°C"):
        return f"{value:g} {unit}"
    return f"{value:g}{unit}"
