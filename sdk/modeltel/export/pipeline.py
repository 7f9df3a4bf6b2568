"""Builds and owns the OpenTelemetry pipeline: providers, exporters, readers, meters, and the Telemetry.

``init()`` is the single entry point used by code, by ``opentelemetry-instrument`` (through the
configurator in :mod:`.distro`) and by ``modeltel run``. It is idempotent: the first call builds the
pipeline, later calls return it. It never raises for configuration problems: a broken exporter set-up
logs one warning and the application keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from .. import config
from .. import taxonomy as tx
from .._version import __version__
from ..hotpath import Telemetry
from ..hotpath.fastmetrics import FastMetrics
from ..hotpath.recorders import FastRecorder, SdkRecorder
from ..hotpath.spans import SpanFactory
from . import exportlog, lifecycle, providers
from .delivery import CountingMetricExporter, CountingSpanExporter
from .readers import MergingReader, PeriodicReader, prometheus_reader_class

_log = logging.getLogger("modeltel")
_lock = threading.Lock()
EXIT_RESERVE_S = 0.1  # of the exit budget, kept for what follows the flush: the warning, dying by the signal
_pipeline: Pipeline | None = None


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
        self.resource = providers.build_resource(settings)
        self.fast = FastMetrics(settings.bucket_overrides, __version__) if settings.fast_path else None
        self.prometheus_server: Any = None
        self._closed = False
        self._span_export: tuple[CountingSpanExporter, BatchSpanProcessor] | None = None
        self._metric_export: CountingMetricExporter | None = None
        exportlog.quiet_repeated_export_errors()
        self.tracer_provider = self._tracer_provider(span_processors)
        self.metric_readers = self._metric_readers(metric_readers)
        self.meter_provider = MeterProvider(
            resource=self.resource,
            metric_readers=self.metric_readers,
            views=providers.views(settings),
            exemplar_filter=providers.exemplar_filter(settings.exemplar_filter),
            shutdown_on_exit=False,  # the pipeline's own atexit hook shuts down, within exit_timeout_s
        )
        if set_global:
            trace.set_tracer_provider(self.tracer_provider)
            metrics.set_meter_provider(self.meter_provider)
        if self.fast is not None:
            recorder: Any = FastRecorder(self.fast)
        else:
            recorder = SdkRecorder(self.meter_provider.get_meter(tx.METER_NAME, __version__), settings.bucket_overrides)
        spans = SpanFactory.for_provider(self.tracer_provider, InstrumentationScope(tx.TRACER_NAME, __version__))
        self.telemetry = Telemetry(settings, recorder, self.tracer_provider, spans)
        self.meters = _guarded("host/GPU meters", self._install_meters)
        lifecycle.on_fork_in_child(self._after_fork_in_child)
        lifecycle.flush_on_sigterm(self.shutdown)
        lifecycle.on_exit(self.shutdown)

    def _tracer_provider(self, span_processors: Sequence[SpanProcessor]) -> TracerProvider:
        settings = self.settings
        provider = TracerProvider(
            resource=self.resource,
            sampler=providers.build_sampler(settings.sampler, settings.sampler_arg),
            shutdown_on_exit=False,  # the pipeline's own atexit hook shuts down, within exit_timeout_s
        )
        for processor in span_processors:
            provider.add_span_processor(processor)
        if settings.traces_exporter != "none":
            exporter = _guarded("the trace exporter", providers.span_exporter, settings)
            if exporter is not None:
                counted = CountingSpanExporter(exporter)
                self._span_export = (counted, BatchSpanProcessor(counted))
                provider.add_span_processor(self._span_export[1])
        return provider

    def _metric_readers(self, given: Sequence[MetricReader]) -> list[MetricReader]:
        settings = self.settings
        readers = list(given)
        if settings.metrics_exporter not in ("none", "prometheus"):
            exporter = _guarded("the metric exporter", providers.metric_exporter, settings)
            if exporter is not None:
                self._metric_export = CountingMetricExporter(exporter)
                readers.append(
                    PeriodicReader(self._metric_export, export_interval_millis=settings.metric_export_interval_ms)
                )
        if settings.prometheus_port or settings.metrics_exporter == "prometheus":
            reader = _guarded("the Prometheus endpoint", self._prometheus_reader)
            if reader is not None:
                readers.append(reader)
        self._attach_fast(readers)
        return readers

    def _attach_fast(self, readers: Sequence[MetricReader]) -> None:
        if self.fast is not None:
            for reader in readers:
                if isinstance(reader, MergingReader):
                    reader.attach_fast_metrics(self.fast, self.resource)

    def _prometheus_reader(self) -> MetricReader:
        from prometheus_client import start_http_server

        port, host = self.settings.prometheus_port or 9464, self.settings.prometheus_host
        try:
            self.prometheus_server, _ = start_http_server(port, addr=host)
        except OSError as e:  # say which address: often the collector's own port
            raise OSError(f"cannot listen on {host}:{port} (MODELTEL_PROMETHEUS_PORT): {e.strerror or e}") from None
        return prometheus_reader_class()()

    def _install_meters(self) -> Any:
        settings = self.settings
        if not (settings.gpu_metrics or settings.host_metrics):
            return None
        try:
            from ..meters import install_meters
        except ImportError:
            return None
        return install_meters(
            self.meter_provider,
            gpu=settings.gpu_metrics,
            host=settings.host_metrics,
            model_name=settings.model_name,
        )

    def _after_fork_in_child(self) -> None:
        """Give a forked worker its own identity and an empty slate (see :mod:`.lifecycle`)."""
        instance = lifecycle.new_instance()
        self.resource = self.resource.merge(instance)
        for provider in (self.meter_provider, self.tracer_provider):
            update = getattr(provider, "_update_resource", None)
            if update is not None:
                update(instance)
        if self.fast is not None:
            self.fast.reset()
            self._attach_fast(self.metric_readers)

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        self.tracer_provider.force_flush(timeout_millis)
        self.meter_provider.force_flush(timeout_millis)

    def shutdown(self, timeout_s: float | None = None, *, since: float | None = None) -> None:
        """Flush and stop within ``timeout_s`` (default: the ``exit_timeout_s`` setting) of ``since`` (a
        ``time.monotonic()`` reading, such as when SIGTERM came; default now).

        At exit this decides how long a process lingers when the collector is down: everything that may
        wait on it (exporters, meters, the Prometheus endpoint) shares the one budget, less
        ``EXIT_RESERVE_S`` for the warning and the exit itself. When it gives up, or when exports failed
        earlier, one warning says how many spans and metric points were not sent.
        """
        if self._closed:
            return
        self._closed = True
        budget = self.settings.exit_timeout_s if timeout_s is None else timeout_s
        now = time.monotonic()
        left = budget - (now - (now if since is None else since)) - min(EXIT_RESERVE_S, budget / 10)
        calls = [self.tracer_provider.shutdown, self.meter_provider.shutdown]
        if self.meters is not None:
            calls.append(self.meters.shutdown)
        if self.prometheus_server is not None:
            calls.append(self.prometheus_server.shutdown)
        finished = lifecycle.within(max(0.0, left), *calls)
        self._report_undelivered(budget, gave_up=not finished)

    def _report_undelivered(self, budget: float, *, gave_up: bool) -> None:
        spans = points = 0
        if self._span_export is not None:
            exporter, processor = self._span_export
            queue = getattr(getattr(processor, "_batch_processor", None), "_queue", ())  # SDK internals, if there
            spans = exporter.undelivered() + (len(queue) if gave_up else 0)
        if self._metric_export is not None:
            points = self._metric_export.undelivered()
        if not (gave_up or spans or points):
            return
        what = f"gave up flushing after {budget:g} s (MODELTEL_EXIT_TIMEOUT)" if gave_up else "some exports failed"
        _log.warning(
            "modeltel: %s; not sent: %d spans, %d metric points (is the collector at OTEL_EXPORTER_OTLP_ENDPOINT up?)",
            what,
            spans,
            points,
        )


def _guarded(what: str, build: Callable[..., Any], *args: Any) -> Any:
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
