"""Shared test fixtures for the instrumentor tests: an isolated modeltel pipeline with in-memory readers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import modeltel
from modeltel import taxonomy as tx


@dataclass
class Tel:
    pipeline: Any
    reader: Any
    exporter: InMemorySpanExporter

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def stage_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.attributes.get(tx.SPAN_ATTR_KIND) == tx.SPAN_KIND_STAGE]

    def points(self, otel_name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == otel_name:
                        out.extend(m.data.data_points)
        return out

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

    def count(self, otel_name: str, **attrs: str) -> float:
        total = 0.0
        for p in self.points(otel_name):
            if all(p.attributes.get(k.replace("_", "."), None) == v for k, v in attrs.items()):
                total += getattr(p, "count", None) if hasattr(p, "bucket_counts") else p.value
        return total


@pytest.fixture
def tel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tel]:
    monkeypatch.delenv("MODELTEL_MODEL_NAME", raising=False)
    monkeypatch.delenv("MODELTEL_MODEL_VERSION", raising=False)
    modeltel.shutdown()
    reader = modeltel.readers.InMemoryReader()
    exporter = InMemorySpanExporter()
    pipeline = modeltel.init(
        set_global=False,
        metric_readers=[reader],
        span_processors=[SimpleSpanProcessor(exporter)],
        traces_exporter="none",
        metrics_exporter="none",
        host_metrics=False,
        gpu_metrics=False,
        model_name="env-model",
        model_version="7",
    )
    yield Tel(pipeline, reader, exporter)
    modeltel.shutdown()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None
