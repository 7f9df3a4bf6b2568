"""Metric readers that export modeltel's fast instruments alongside the SDK's own.

The Python SDK has no MetricProducer hook, so the merge happens in the one place every reader funnels
through: ``MetricReader.collect``. Each reader here collects the SDK's data as usual, then adds the
``Metric`` objects from :class:`modeltel.hotpath.fastmetrics.FastMetrics` under the ``modeltel`` scope of the
same resource before handing the batch to its exporter.
"""

from __future__ import annotations

import threading

from opentelemetry.sdk.metrics.export import (
    Gauge,
    InMemoryMetricReader,
    Metric,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource

from ..hotpath.fastmetrics import FastMetrics


def merge(data: MetricsData | None, fast: FastMetrics, resource: Resource) -> MetricsData | None:
    """Return ``data`` with the fast instruments' metrics added under their own scope."""
    metrics = list(fast.collect())
    if not metrics:
        return data
    scope = ScopeMetrics(scope=fast.scope, metrics=metrics, schema_url="")
    if data is None:
        return MetricsData(resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[scope], schema_url="")])
    resource_metrics = list(data.resource_metrics)
    for i, rm in enumerate(resource_metrics):
        if rm.resource == resource:
            resource_metrics[i] = ResourceMetrics(rm.resource, [*rm.scope_metrics, scope], rm.schema_url)
            break
    else:
        resource_metrics.append(ResourceMetrics(resource=resource, scope_metrics=[scope], schema_url=""))
    return MetricsData(resource_metrics=resource_metrics)


class MergingReader:
    """Overrides ``collect`` so the fast instruments ride along with every collection."""

    _modeltel_fast: FastMetrics | None = None
    _modeltel_resource: Resource | None = None

    def attach_fast_metrics(self, fast: FastMetrics, resource: Resource) -> None:
        self._modeltel_fast = fast
        self._modeltel_resource = resource

    def collect(self, timeout_millis: float = 10_000) -> None:
        if self._collect is None or self._modeltel_fast is None:
            return super().collect(timeout_millis=timeout_millis)
        data = self._collect(self, timeout_millis=timeout_millis)
        data = merge(data, self._modeltel_fast, self._modeltel_resource)
        if data is not None:
            self._receive_metrics(data, timeout_millis=timeout_millis)


class PeriodicReader(MergingReader, PeriodicExportingMetricReader):
    """PeriodicExportingMetricReader that also exports modeltel's fast instruments."""

    def _at_fork_reinit(self) -> None:
        """In a forked child the SDK starts a new export thread but keeps ``_export_lock``, which the parent's
        export thread may hold at the fork: held forever in the child, which then exports nothing (a forked
        LitServe API server counted its predictions and never sent them). The child gets a lock of its own."""
        self._export_lock = threading.Lock()
        super()._at_fork_reinit()


class InMemoryReader(MergingReader, InMemoryMetricReader):
    """InMemoryMetricReader that also returns modeltel's fast instruments (for tests and the demo)."""


def ratio_units(data: MetricsData) -> MetricsData:
    """``data`` with unit-"1" gauges given the unit "ratio", so they expose as ``<name>_ratio``.

    The OTel compatibility spec, otelcol-contrib and modeltel's collector name a unit-"1" gauge
    ``hw_gpu_utilization_ratio``; the Python Prometheus exporter drops the suffix. Renaming the unit here
    gives one name per series on every path (``modeltel.taxonomy`` lists it).
    """

    def fix(m: Metric) -> Metric:
        return Metric(m.name, m.description, "ratio", m.data) if m.unit == "1" and isinstance(m.data, Gauge) else m

    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                rm.resource,
                [ScopeMetrics(sm.scope, [fix(m) for m in sm.metrics], sm.schema_url) for sm in rm.scope_metrics],
                rm.schema_url,
            )
            for rm in data.resource_metrics
        ]
    )


def prometheus_reader_class() -> type[MetricReader]:
    """The Prometheus pull reader, merging too (imported lazily: prometheus_client is optional here)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    class PrometheusReader(MergingReader, PrometheusMetricReader):
        def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> None:
            super()._receive_metrics(ratio_units(metrics_data), timeout_millis=timeout_millis, **kwargs)

    return PrometheusReader
