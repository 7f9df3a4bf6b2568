"""Exporters that count what they did not deliver, so an exit that gives up can say how much it left.

A process with a dead collector would otherwise wait out every retry of every exporter at exit (the
OTLP exporters retry for up to ``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s, per export): a 0.8 s script took
15 s to end. :meth:`modeltel.export.pipeline.Pipeline.shutdown` bounds the flush instead, and these
wrappers supply the count for its one log line, and say why the first failed export failed
(:func:`.exportlog.export_failed`). They add one integer update per exported batch, on the export thread,
never on the request path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from . import exportlog


class CountingSpanExporter(SpanExporter):
    """``inner``, counting the spans of failed exports and of the export in progress."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = 0
        self.in_flight = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        n = len(spans)
        self.in_flight = n  # the batch processor exports one batch at a time
        result = SpanExportResult.FAILURE
        exportlog.export_started()
        try:
            result = self.inner.export(spans)
        finally:
            self.in_flight = 0
            if result is not SpanExportResult.SUCCESS:
                self.failed += n
                exportlog.export_failed("spans", self.inner)
        return result

    def undelivered(self) -> int:
        return self.failed + self.in_flight

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _points(data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics
    )


class CountingMetricExporter(MetricExporter):
    """``inner`` with its temporality and aggregation preferences, counting the data points not delivered."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self.failed = 0
        self.in_flight = 0

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        n = _points(metrics_data)
        self.in_flight = n
        result = MetricExportResult.FAILURE
        exportlog.export_started()
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        finally:
            self.in_flight = 0
            if result is not MetricExportResult.SUCCESS:
                self.failed += n
                exportlog.export_failed("metrics", self.inner)
        return result

    def undelivered(self) -> int:
        return self.failed + self.in_flight

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)
