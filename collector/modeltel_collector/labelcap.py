"""The byte bound on label values: what a client sends as an attribute value becomes a label value on
``/metrics`` (and in Prometheus, and in the alerts sent to Alertmanager), so its length is capped.

Without it, seven spans with 1 MB model names made ``/metrics`` 213 MB: Prometheus' scrape timed out
(``up`` = 0, every series lost) or its memory grew by gigabytes. A value over ``max_bytes`` (UTF-8) is cut
on a character boundary and ends with ``MARKER``, so the cut shows; each cut is counted, by what was cut,
in ``modeltel_collector_truncated_total{what=...}``. Distinct long values sharing their first bytes
become one series, which is what bounds them.
"""

from __future__ import annotations

from collections.abc import Callable

MARKER = "…[truncated]"
NAME_MARKER = "_truncated"  # a label name stays a valid name: [a-zA-Z0-9_] only
_MARKER_BYTES = len(MARKER.encode())
DEFAULT_MAX_BYTES = 256
MIN_MAX_BYTES = 32  # room for the marker and a recognisable start


class LabelCap:
    """Cuts label values to ``max_bytes``; ``on_cut(what)`` is called for each value cut (the counter)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, on_cut: Callable[[str], None] | None = None) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"label_value_max_bytes must be at least {MIN_MAX_BYTES}, got {max_bytes}")
        self.max_bytes = max_bytes
        self.on_cut = on_cut
        self.short = max_bytes // 4  # no string of this many characters can exceed max_bytes in UTF-8

    def __call__(self, value: str, what: str = "label_value") -> str:
        """``value``, or its first bytes (whole characters) and ``MARKER`` when it is over the bound."""
        if len(value) <= self.short:
            return value
        raw = value.encode("utf-8", "surrogatepass")
        if len(raw) <= self.max_bytes:
            return value
        if self.on_cut is not None:
            self.on_cut(what)
        return raw[: self.max_bytes - _MARKER_BYTES].decode("utf-8", "ignore") + MARKER

    def name(self, label: str) -> str:
        """A (sanitised, so ASCII) label name cut to the same bound, ending in ``NAME_MARKER``, counted as
        ``label_name``: an attribute key is as much the client's as its value."""
        if len(label) <= self.max_bytes:
            return label
        if self.on_cut is not None:
            self.on_cut("label_name")
        return label[: self.max_bytes - len(NAME_MARKER)] + NAME_MARKER

    def silent(self) -> LabelCap:
        """The same bound without counting: for a look-ahead that the real merge will count."""
        return LabelCap(self.max_bytes)
