"""Shared fixtures: an isolated modeltel pipeline with in-memory span and metric capture."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import modeltel
from modeltel.readers import InMemoryReader


@dataclass
class Captured:
    pipeline: modeltel.Pipeline
    spans: InMemorySpanExporter
    reader: InMemoryReader

    def finished(self) -> list[Any]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]

    def point(self, name: str, **attrs: str) -> Any:
        matches = [p for p in self.points(name) if all(p.attributes.get(k) == v for k, v in attrs.items())]
        assert len(matches) == 1, f"expected one {name} point with {attrs}, got {[dict(p.attributes) for p in matches]}"
        return matches[0]


def make_pipeline(**settings: Any) -> Captured:
    modeltel.shutdown()
    spans = InMemorySpanExporter()
    reader = InMemoryReader()
    defaults = dict(
        set_global=False,
        traces_exporter="none",
        metrics_exporter="none",
        host_metrics=False,
        gpu_metrics=False,
        model_name="iris",
        model_version="1.0",
    )
    pipeline = modeltel.init(
        metric_readers=[reader], span_processors=[SimpleSpanProcessor(spans)], **{**defaults, **settings}
    )
    return Captured(pipeline, spans, reader)


@pytest.fixture
def captured() -> Iterator[Captured]:
    c = make_pipeline()
    yield c
    modeltel.shutdown()


@pytest.fixture
def make_captured() -> Iterator[Any]:
    yield make_pipeline
    modeltel.shutdown()
