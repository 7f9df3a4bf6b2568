"""Self-metrics: what the collector received, refused and dropped, and how full its queues are."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable


class Stats:
    """Labelled counters plus gauges read at scrape time; cheap enough to bump once per request."""

    COUNTERS = {
        "modeltel_collector_received_spans": ("Spans accepted, by protocol.", "protocol"),
        "modeltel_collector_received_metric_points": ("Metric data points accepted, by protocol.", "protocol"),
        "modeltel_collector_refused_requests": ("Export requests refused, by reason.", "reason"),
        "modeltel_collector_dropped": ("Items dropped after acceptance, by what and why.", "what"),
        "modeltel_collector_truncated": (
            "Values, reads and lists cut to their bound (label_value_max_bytes, trace_fetch_max_spans, "
            "trace_search_max_rows, trace_max_services), by what.",
            "what",
        ),
        "modeltel_collector_derived_overflow": (
            "Span-derived observations recorded under _other span labels (derived_max_series), by metric.",
            "metric",
        ),
        "modeltel_collector_trace_wal_checkpoints": (
            "Checkpoints of the trace store's WAL past trace_wal_max_bytes, by outcome (truncated, busy, error).",
            "outcome",
        ),
        "modeltel_collector_forwarded_requests": ("Requests forwarded downstream, by signal.", "signal"),
        "modeltel_collector_unfit_latency_points": (
            "Latency histogram points whose bucket bounds cannot hold the taxonomy's range, by metric.",
            "metric",
        ),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, defaultdict[str, float]] = {name: defaultdict(float) for name in self.COUNTERS}
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def inc(self, name: str, label: str, amount: float = 1) -> None:
        with self._lock:
            self.counters[name][label] += amount

    def gauge(self, name: str, help_: str, fn: Callable[[], float]) -> None:
        self.gauges[name] = (help_, fn)

    def snapshot(self) -> tuple[list[tuple[str, str, str, list[tuple[str, float]]]], list[tuple[str, str, float]]]:
        """([(name, help, label key, [(label value, value)])], [(gauge name, help, value)])."""
        with self._lock:
            counters = [(n, h, k, sorted(self.counters[n].items())) for n, (h, k) in self.COUNTERS.items()]
        gauges = [(n, h, float(fn())) for n, (h, fn) in self.gauges.items()]
        return counters, gauges
