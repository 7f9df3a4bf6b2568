"""Builds and owns the OpenTelemetry pipeline: resource, sampler, providers, exporters, readers, meters.

``init()`` is the single entry point used by code, by ``opentelemetry-instrument`` (through the
configurator in :mod:`modeltel.distro`) and by ``modeltel run``. It is idempotent: the first call
builds the pipeline, later calls return it. It never raises for configuration problems: a broken
exporter set-up logs one warning and the application keeps serving.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import __version__, config
from . import taxonomy as tx
from .fastmetrics import FastMetrics
from .readers import PeriodicReader, _MergingMixin, prometheus_reader_class
from .recorders import FastRecorder, SdkRecorder
from .spans import SpanFactory
from .telemetry import Telemetry

_log = logging.getLogger("modeltel")
_lock = threading.Lock()
_pipeline: Pipeline | None = None


def build_sampler(name: str, arg: float) -> Sampler:
    return {
        "always_on": lambda: ALWAYS_ON,
        "always_off": lambda: ALWAYS_OFF,
        "traceidratio": lambda: TraceIdRatioBased(arg),
        "parentbased_always_on": lambda: ParentBased(ALWAYS_ON),
        "parentbased_always_off": lambda: ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": lambda: ParentBased(TraceIdRatioBased(arg)),
    }[name]()


def build_resource(settings: config.Settings) -> Resource:
    """Resource.create() adds OTEL_RESOURCE_ATTRIBUTES and SDK defaults; ours take precedence."""
    return Resource.create(
        {
            "service.name": settings.service_name,
            "service.instance.id": str(uuid.uuid4()),
            tx.RESOURCE_MODEL_NAME: settings.model_name,
            tx.RESOURCE_MODEL_VERSION: settings.model_version,
            "telemetry.distro.name": "modeltel",
            "telemetry.distro.version": __version__,
        }
    )


def _span_exporter(settings: config.Settings) -> Any:
    if settings.traces_exporter == "console":
        return ConsoleSpanExporter()
    if settings.traces_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: the standard OTEL_* variables


def _metric_exporter(settings: config.Settings) -> Any:
    if settings.metrics_exporter == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if settings.metrics_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter()


def _views(settings: config.Settings) -> list[View]:
    views = []
    for name, buckets in settings.bucket_overrides.items():
        if settings.histogram == "exponential":
            aggregation = ExponentialBucketHistogramAggregation()
        else:
            aggregation = ExplicitBucketHistogramAggregation(list(buckets))
        views.append(View(instrument_name=name, meter_name=tx.METER_NAME, aggregation=aggregation))
    return views


def _exemplar_filter(name: str) -> Any:
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, AlwaysOnExemplarFilter, TraceBasedExemplarFilter

    return {
        "trace_based": TraceBasedExemplarFilter,
        "always_on": AlwaysOnExemplarFilter,
        "always_off": AlwaysOffExemplarFilter,
    }[name]()


class Pipeline:
    """The providers and helpers modeltel set up, and the :class:`Telemetry` bound to them."""

    def __init__(
        self,
        settings: config.Settings,
        *,
        metric_readers: Sequence[MetricReader] = (),
        span_processors: Sequence[SpanProcessor] = (),
        set_global: bool = True,
    ) -> None:
        self.settings = settings
        self.resource = build_resource(settings)
        self.fast = FastMetrics(settings.bucket_overrides, __version__) if settings.fast_path else None
        self.prometheus_server: Any = None
        self.meters: Any = None
        self._closed = False

        self.tracer_provider = TracerProvider(
            resource=self.resource, sampler=build_sampler(settings.sampler, settings.sampler_arg)
        )
        for processor in span_processors:
            self.tracer_provider.add_span_processor(processor)
        if settings.traces_exporter != "none":
            exporter = _guarded("the trace exporter", _span_exporter, settings)
            if exporter is not None:
                self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))

        readers = list(metric_readers)
        if settings.metrics_exporter not in ("none", "prometheus"):
            exporter = _guarded("the metric exporter", _metric_exporter, settings)
            if exporter is not None:
                readers.append(PeriodicReader(exporter, export_interval_millis=settings.metric_export_interval_ms))
        if settings.prometheus_port or settings.metrics_exporter == "prometheus":
            reader = _guarded("the Prometheus endpoint", self._prometheus_reader, settings)
            if reader is not None:
                readers.append(reader)
        for reader in readers:
            if isinstance(reader, _MergingMixin) and self.fast is not None:
                reader.attach_fast_metrics(self.fast, self.resource)

        self.meter_provider = MeterProvider(
            resource=self.resource,
            metric_readers=readers,
            views=_views(settings),
            exemplar_filter=_exemplar_filter(settings.exemplar_filter),
        )
        self.metric_readers = readers
        if set_global:
            trace.set_tracer_provider(self.tracer_provider)
            metrics.set_meter_provider(self.meter_provider)

        if self.fast is not None:
            recorder: Any = FastRecorder(self.fast)
        else:
            recorder = SdkRecorder(self.meter_provider.get_meter(tx.METER_NAME, __version__), settings.bucket_overrides)
        scope = InstrumentationScope(tx.TRACER_NAME, __version__)
        self.telemetry = Telemetry(settings, recorder, self.tracer_provider, SpanFactory(self.tracer_provider, scope))
        self.meters = _guarded("host/GPU meters", self._install_meters, settings)

        if hasattr(os, "register_at_fork"):
            weak = weakref.WeakMethod(self._after_fork_in_child)
            os.register_at_fork(after_in_child=lambda: (m := weak()) and m())

    def _prometheus_reader(self, settings: config.Settings) -> MetricReader:
        from prometheus_client import start_http_server

        port = settings.prometheus_port or 9464
        self.prometheus_server, _ = start_http_server(port, addr=settings.prometheus_host)
        return prometheus_reader_class()()

    def _install_meters(self, settings: config.Settings) -> Any:
        if not (settings.gpu_metrics or settings.host_metrics):
            return None
        try:
            from .meters import install_meters
        except ImportError:
            return None
        return install_meters(
            self.meter_provider,
            gpu=settings.gpu_metrics,
            host=settings.host_metrics,
            model_name=settings.model_name,
        )

    def _after_fork_in_child(self) -> None:
        """Give a forked worker its own identity and an empty slate.

        The SDK restarts its reader and span-processor threads in the child; modeltel gives the worker a
        new ``service.instance.id`` (so workers stay distinct series that sum correctly) and zeroes the
        fast series it inherited, which the parent exports itself.
        """
        instance = Resource({"service.instance.id": str(uuid.uuid4()), "process.pid": os.getpid()})
        self.resource = self.resource.merge(instance)
        for provider in (self.meter_provider, self.tracer_provider):
            update = getattr(provider, "_update_resource", None)
            if update is not None:
                update(instance)
        if self.fast is not None:
            self.fast.reset()
            for reader in self.metric_readers:
                if isinstance(reader, _MergingMixin):
                    reader.attach_fast_metrics(self.fast, self.resource)

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        self.tracer_provider.force_flush(timeout_millis)
        self.meter_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.meters is not None:
            self.meters.shutdown()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self.prometheus_server is not None:
            self.prometheus_server.shutdown()


def _guarded(what: str, build: Any, *args: Any) -> Any:
    try:
        return build(*args)
    except Exception as exc:  # monitoring set-up must never stop the application
        _log.warning("modeltel: could not set up %s (%s: %s); continuing without it", what, type(exc).__name__, exc)
        return None


def init(
    *,
    metric_readers: Sequence[MetricReader] = (),
    span_processors: Sequence[SpanProcessor] = (),
    set_global: bool = True,
    **settings: Any,
) -> Pipeline | None:
    """Set up tracing and metrics for this process; returns the pipeline (None when disabled).

    Keyword arguments are :class:`modeltel.config.Settings` fields and beat the environment. Calling it
    again returns the pipeline built first.
    """
    global _pipeline
    with _lock:
        if _pipeline is not None:
            return _pipeline
        resolved = config.load(**settings)
        if resolved.disabled:
            _log.info("modeltel: disabled by MODELTEL_DISABLED")
            return None
        _pipeline = Pipeline(
            resolved, metric_readers=metric_readers, span_processors=span_processors, set_global=set_global
        )
        atexit.register(_pipeline.shutdown)
        return _pipeline


def get_pipeline() -> Pipeline | None:
    return _pipeline


def shutdown() -> None:
    """Flush and stop the pipeline built by :func:`init`; a later ``init()`` builds a new one."""
    global _pipeline
    with _lock:
        pipeline, _pipeline = _pipeline, None
    if pipeline is not None:
        pipeline.shutdown()
