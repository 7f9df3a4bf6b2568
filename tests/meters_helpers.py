"""Shared helpers for the meter tests."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


def settle() -> None:
    """Sleep past one CPU-time clock tick (10 ms on Linux), so a cpu percentage can be measured."""
    time.sleep(0.03)


def provider() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader], shutdown_on_exit=False), reader


def collect(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """OTel metric name -> [(attributes, value)]."""
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                name = metric.name
                pts = out.setdefault(name, [])
                for p in metric.data.data_points:
                    pts.append((dict(p.attributes), p.value))
    return out


def units(reader: InMemoryMetricReader) -> dict[str, str]:
    data = reader.get_metrics_data()
    return {m.name: m.unit for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def by_device(points: list[tuple[dict[str, Any], Any]], **match: Any) -> dict[str, Any]:
    """hw.id -> value, for points whose attributes contain ``match`` (dots spelled as __)."""
    want = {k.replace("__", "."): v for k, v in match.items()}
    return {a["hw.id"]: v for a, v in points if all(a.get(k) == v for k, v in want.items())}
