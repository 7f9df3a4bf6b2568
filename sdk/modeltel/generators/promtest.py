"""What a generated ``promtool test rules`` file says: input series in promtool's notation, and the
annotations an alert is expected to carry, rendered here as Prometheus renders them (a tiny subset of Go's
templates: the functions the generator's annotations use).

Shared by the alert rule tests (``promtool``) and the SLO burn-rate tests (``promtool_slo``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["fmt_series", "render_template"]


def _humanize(v: float) -> str:
    if v == 0 or abs(v) < 1:
        return f"{v:.4g}"
    prefixes = ["", "k", "M", "G", "T", "P", "E", "Z", "Y"]
    i = 0
    while abs(v) >= 1000 and i < len(prefixes) - 1:
        v, i = v / 1000, i + 1
    return f"{v:.4g}{prefixes[i]}"


def _humanize_duration(v: float) -> str:
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        return f"{v:.4g}s"  # every threshold in the rules is under a minute
    prefix = ""
    for p in ("m", "u", "n"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{v:.4g}{prefix}s"


_VALUE: dict[str, Callable[[float], str]] = {
    "{{ $value | humanizeDuration }}": _humanize_duration,
    "{{ $value | humanizePercentage }}": lambda v: f"{v * 100:.4g}%",
    '{{ printf "%.1f" $value }}': lambda v: f"{v:.1f}",
    '{{ printf "%.0f" $value }}': lambda v: f"{v:.0f}",
    "{{ $value | humanize }}": _humanize,
}
_LABEL = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def render_template(text: str, labels: dict[str, str], value: float | None) -> str:
    """What Prometheus renders for the annotation templates the generator writes."""
    for template, fn in _VALUE.items():
        if template in text:
            text = text.replace(template, fn(value))
    return _LABEL.sub(lambda m: labels.get(m.group(1), ""), text)


def fmt_series(s: tuple[str, dict[str, str], str]) -> dict:
    """A (metric, labels, values) series as a promtool ``input_series`` entry."""
    labels = ",".join(f'{k}="{v}"' for k, v in s[1].items())
    return {"series": f"{s[0]}{{{labels}}}", "values": s[2]}
