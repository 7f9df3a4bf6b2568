"""Capture what modeltel records, in memory: one harness for modeltel's own tests and for users' tests.

``with capture(model_name="iris") as c:`` builds an isolated pipeline (nothing global is touched, no
exporter, no meters) whose spans and metric points can be asserted on directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .. import taxonomy as tx
from ..export import Pipeline, init, shutdown
from ..export.readers import InMemoryReader

# Keyword names for the dotted attribute keys, so that ``count(name, model_name="x")`` reads naturally.
_KEYWORDS = {"model_name": tx.ATTR_MODEL_NAME, "model_version": tx.ATTR_MODEL_VERSION, "error_type": tx.ATTR_ERROR_TYPE}
_DEFAULTS: dict[str, Any] = {
    "set_global": False,
    "traces_exporter": "none",
    "metrics_exporter": "none",
    "host_metrics": False,
    "gpu_metrics": False,
}


class Capture:
    """The pipeline of one capture, its finished spans and its metric points."""

    def __init__(self, pipeline: Pipeline, exporter: InMemorySpanExporter, reader: InMemoryReader) -> None:
        self.pipeline = pipeline
        self.exporter = exporter
        self.reader = reader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, in the order they ended (those named ``name`` only, if given)."""
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def stage_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.attributes.get(tx.SPAN_ATTR_KIND) == tx.SPAN_KIND_STAGE]

    def points(self, name: str, **attrs: str) -> list[Any]:
        """Data points of the metric with OTel name ``name`` whose attributes include ``attrs``."""
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        wanted = {_KEYWORDS.get(k, k): v for k, v in attrs.items()}
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
            if all(point.attributes.get(k) == v for k, v in wanted.items())
        ]

    def point(self, name: str, **attrs: str) -> Any:
        """The one data point of ``name`` with ``attrs``; fails the test when there is not exactly one."""
        matches = self.points(name, **attrs)
        assert len(matches) == 1, f"expected one {name} point with {attrs}, got {[dict(p.attributes) for p in matches]}"
        return matches[0]

    def count(self, name: str, **attrs: str) -> float:
        """Sum over matching points of a counter's value or a histogram's count."""
        return sum(p.count if hasattr(p, "bucket_counts") else p.value for p in self.points(name, **attrs))

    def stage_counts(self) -> dict[tuple[str, str, str], int]:
        """(model.name, model.version, stage) -> number of stage histogram samples."""
        return {
            (
                p.attributes[tx.ATTR_MODEL_NAME],
                p.attributes[tx.ATTR_MODEL_VERSION],
                p.attributes[tx.ATTR_STAGE],
            ): p.count
            for p in self.points(tx.STAGE_LATENCY.otel_name)
            if p.count
        }


@contextmanager
def capture(**settings: Any) -> Iterator[Capture]:
    """An isolated pipeline built by ``modeltel.init(**settings)`` with in-memory capture; shut down at exit.

    Any pipeline already built is shut down first (``init()`` keeps one per process).
    """
    shutdown()
    exporter = InMemorySpanExporter()
    reader = InMemoryReader()
    extra_readers = settings.pop("metric_readers", ())
    pipeline = init(
        metric_readers=[reader, *extra_readers],
        span_processors=[SimpleSpanProcessor(exporter)],
        **{**_DEFAULTS, **settings},
    )
    assert pipeline is not None, "capture() needs an enabled pipeline (MODELTEL_DISABLED is set)"
    try:
        yield Capture(pipeline, exporter, reader)
    finally:
        shutdown()
