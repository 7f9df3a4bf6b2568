"""Prometheus' arithmetic, for code that prints what a PromQL query would show without a Prometheus:
``modeltel demo``'s report and the collector's console. One copy, so both agree with Grafana."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["histogram_quantile"]


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """Prometheus' estimate from per-bucket (not cumulative) ``counts``, the last one the +Inf bucket:
    linear interpolation inside the bucket holding the q-th observation; NaN with no observations; in the
    +Inf bucket, the last finite bound (all Prometheus can say)."""
    total = sum(counts)
    if total <= 0:
        return math.nan
    rank, cumulative = q * total, 0.0
    for i, count in enumerate(counts):
        if count and cumulative + count >= rank:
            if i == len(bounds):
                return bounds[-1]
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - cumulative) / count
        cumulative += count
    return bounds[-1] if bounds else math.nan
