"""Checks a metrics request can be answered with before it is queued, so OTLP ``partial_success`` tells
the client which points will never be exposed and why (the ingest worker applies the same checks).

Only what a request shows by itself is checked here (names, histogram shape); limits that depend on the
store's state (series and resource caps) are counted as drops when the worker merges the request.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

from google.protobuf.message import Message

from modeltel_collector.otlp import METRICS, RESPONSE_TYPES
from modeltel_collector.translate import family_name_problem, metric_family_name


def response(signal: str, request: Message, over_limit: int = 0) -> Message:
    """The Export*ServiceResponse for an accepted request: partial_success counts the metric points the
    collector will not expose (bad names, inconsistent histograms, ``over_limit`` points of new series
    past the series limit), and says why."""
    resp = RESPONSE_TYPES[signal]()
    if signal == METRICS:
        rejected, reason = metrics_request_problems(request)
        if over_limit:
            rejected, reason = rejected + over_limit, reason or "series limit reached: points of new series refused"
        if rejected:
            resp.partial_success.rejected_data_points = rejected
            resp.partial_success.error_message = reason
    return resp


_SUPPORTED = ("sum", "gauge", "histogram", "exponential_histogram")


def histogram_problem(point) -> str:
    """Why an explicit-bucket histogram point is inconsistent ('' when it is not).

    It used to be padded or truncated silently, which exposes buckets that mean something else. Runs
    per point on the ingest path: the bounds check is cached, as every point of a metric shares them.
    """
    bounds = tuple(point.explicit_bounds)
    if point.bucket_counts and len(point.bucket_counts) != len(bounds) + 1:
        return f"histogram has {len(point.bucket_counts)} bucket counts for {len(bounds)} bounds (want bounds + 1)"
    return _bounds_problem(bounds) if bounds else ""


@lru_cache(maxsize=1024)
def _bounds_problem(bounds: tuple[float, ...]) -> str:
    if not all(map(math.isfinite, bounds)):
        return "histogram bounds must be finite numbers"
    if any(b >= c for b, c in itertools.pairwise(bounds)):
        return "histogram bounds must be sorted and distinct"
    return ""


def metric_name(metric) -> tuple[str, str]:
    """(Prometheus family name, why it cannot be exposed or '') of an OTLP metric."""
    kind = metric.WhichOneof("data")
    is_gauge = kind == "gauge" or (kind == "sum" and not metric.sum.is_monotonic)
    name = metric_family_name(metric.name, metric.unit, is_gauge)
    return name, family_name_problem(name)


def metrics_request_problems(request) -> tuple[int, str]:
    """(data points that will be rejected, the first reason) for an ExportMetricsServiceRequest."""
    rejected, reason = 0, ""
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind not in _SUPPORTED:
                    points = len(getattr(m, kind).data_points) if kind else 0
                    rejected, reason = rejected + max(1, points), reason or f"{m.name}: unsupported type {kind}"
                elif problem := metric_name(m)[1]:
                    rejected, reason = rejected + len(getattr(m, kind).data_points), reason or problem
                elif kind == "histogram":
                    for p in m.histogram.data_points:
                        if problem := histogram_problem(p):
                            rejected, reason = rejected + 1, reason or f"{m.name}: {problem}"
    return rejected, reason
