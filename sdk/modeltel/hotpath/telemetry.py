"""``Telemetry``: the stage/prediction API bound to one tracer provider and one recorder.

``modeltel.init()`` builds one for its pipeline. Without a pipeline, :func:`telemetry_for` builds one
over OpenTelemetry's global providers (so a service that sets up OpenTelemetry itself still gets
modeltel's spans and metrics), or over providers an instrumentor was given (``tracer_provider=`` /
``meter_provider=``, as contrib instrumentors take them).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind

from .. import config
from .. import taxonomy as tx
from .._version import __version__
from ..config import Settings
from .held import SpanHold
from .recorders import Recorder, SdkRecorder
from .series import CardinalityGuard, ModelSeries
from .spans import FastSpan, SpanFactory
from .stage import Prediction, Stage
from .state import current

_log = logging.getLogger("modeltel")


class Telemetry:
    """Binds the stage/prediction API to one tracer and one recorder."""

    def __init__(
        self,
        settings: Settings,
        recorder: Recorder,
        tracer_provider: trace.TracerProvider | None,
        span_factory: SpanFactory | None = None,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.enabled = not settings.disabled
        self._stage_guard = CardinalityGuard("stage", settings.max_stages, tx.CANONICAL_STAGES)
        self._error_guard = CardinalityGuard("error_type", settings.max_error_types)
        self._models: dict[tuple[str, str], ModelSeries] = {}
        self._models_lock = threading.Lock()
        self._tracer, self.tracing, self._root_off, self._parent_based = _tracing_mode(tracer_provider)
        self._spans = span_factory
        # seconds past which a held prediction is kept (see .held); None: the option is off or cannot work
        self.keep_threshold = (
            settings.keep_slow_threshold_s if settings.keep_slow_and_failed and span_factory is not None else None
        )
        self._failure_logged = False
        self.exemplars = settings.exemplar_filter != "always_off"  # sampled spans become exemplars

    # -- series -------------------------------------------------------------------------------------
    def model(self, name: str | None = None, version: str | None = None) -> ModelSeries:
        """The bound series of a model (this process's configured model by default)."""
        key = (name or self.settings.model_name, version or self.settings.model_version)
        series = self._models.get(key)
        if series is None:
            with self._models_lock:
                series = self._models.get(key)
                if series is None:
                    series = self._models[key] = ModelSeries(
                        self.recorder, *key, stage_guard=self._stage_guard, error_guard=self._error_guard
                    )
        return series

    def resolve_model(self, name: str | None, version: str | None, parent: Stage | None) -> ModelSeries:
        """The model a stage records under: its own, else its parent's name, else the configured one."""
        if name is None and version is None and parent is not None:
            return parent.model
        if parent is not None and name is None:
            name = parent.model.name
        return self.model(name, version)

    def start_span(self, parent: Stage | None, name: str, attributes: Mapping[str, Any]) -> trace.Span | None:
        """A span for a prediction or stage, or None under a trace that is not sampled (or no tracing)."""
        if parent is not None:
            if not parent.sampled:
                return None
            if otel_context.get_current() is parent._otel_ctx:  # nothing was started in between
                ctx = parent._span.get_span_context()
            else:
                ctx = trace.get_current_span().get_span_context()
        elif not self.tracing:
            return None
        else:
            ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            if not ctx.trace_flags.sampled:
                if parent is not None and type(parent._span) is FastSpan and ctx is parent._span._context:
                    hold = parent._span._factory
                    if type(hold) is SpanHold:  # inside a held prediction: held too
                        return hold.start(name, attributes, ctx)
                if self._parent_based:
                    return None
        elif self._root_off:
            return None
        if self._spans is not None:
            return self._spans.start(name, attributes, ctx)
        span = self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        return span if span.is_recording() else None

    def hold_span(self, name: str, attributes: Mapping[str, Any]) -> FastSpan | None:
        """A held span for a prediction the sampler dropped (``keep_slow_and_failed``), in a hold of its own."""
        if self._spans is None or not self.tracing:
            return None
        return SpanHold(self._spans).start(name, attributes, trace.get_current_span().get_span_context())

    def monitoring_failed(self, failure: Exception) -> None:
        """Log a failure inside modeltel once (with its traceback), then quietly; the request goes on."""
        if not self._failure_logged:
            self._failure_logged = True
            _log.error("modeltel: recording failed; the request continues unmonitored", exc_info=failure)

    # -- API ----------------------------------------------------------------------------------------
    def stage(
        self,
        name: str,
        *,
        model_name: str | None = None,
        model_version: str | None = None,
        span_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        record: bool = True,
    ) -> Stage:
        """A stage span and ``model_stage_latency_seconds`` sample; context manager or decorator.

        ``record=False`` makes only the span (model libraries nested in a framework's stage use it, so
        the stage is not counted twice). ``attributes`` are added to the span only.
        """
        if record:
            return Stage(self, name, model_name, model_version, span_name, attributes)
        return Stage(self, name, model_name, model_version, span_name, attributes, record=False)

    def prediction(
        self,
        model_name: str | None = None,
        model_version: str | None = None,
        *,
        span_name: str = "predict",
        attributes: Mapping[str, Any] | None = None,
        own_span: bool = True,
    ) -> Prediction:
        """A prediction root span, latency sample and ``model_predictions_total`` count.

        ``own_span=False`` adopts the current span (an HTTP server span, say) instead of starting one:
        nested stages become its children and it gets the model attributes. Such a prediction gives
        way to a prediction the application opens inside it, so a request is counted once. Its outcome
        can be set from what the framework answered with :meth:`Prediction.set_outcome`.
        """
        if own_span:
            return Prediction(self, model_name, model_version, span_name, attributes)
        return Prediction(self, model_name, model_version, span_name, attributes, own_span=False)

    def monitor_prediction(self, model_name: str | None = None, model_version: str | None = None) -> Prediction:
        """:meth:`prediction` under the monitoring spec's decorator name: ``@telemetry.monitor_prediction()``."""
        return self.prediction(model_name, model_version)

    def record_confidence(self, value: float, model_name: str | None = None, model_version: str | None = None) -> None:
        if self.enabled and self.settings.record_confidence:
            self.resolve_model(model_name, model_version, current.get()).confidence.record(float(value))

    def record_batch_size(self, size: int, model_name: str | None = None, model_version: str | None = None) -> None:
        if self.enabled:
            self.resolve_model(model_name, model_version, current.get()).batch.record(float(size))

    def set_online_accuracy(
        self, value: float, model_name: str | None = None, model_version: str | None = None
    ) -> None:
        if self.enabled:
            model = self.resolve_model(model_name, model_version, current.get())
            self.recorder.gauge(tx.ONLINE_ACCURACY, model.metric_attrs).set(float(value))


def _tracing_mode(provider: trace.TracerProvider | None) -> tuple[trace.Tracer, bool, bool, bool]:
    """(tracer, tracing on, root spans never sampled, sampler respects a parent's decision)."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

    provider = provider or trace.get_tracer_provider()
    tracer = provider.get_tracer(tx.TRACER_NAME, __version__)
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return tracer, False, True, True
    if not isinstance(provider, SdkTracerProvider):
        return tracer, True, False, True
    sampler = provider.sampler
    parent_based = isinstance(sampler, ParentBased)
    root = getattr(sampler, "_root", sampler) if parent_based else sampler
    root_off = root is ALWAYS_OFF or (isinstance(root, TraceIdRatioBased) and root.rate == 0.0)
    return tracer, True, root_off, parent_based


@functools.lru_cache(maxsize=8)
def telemetry_for(
    tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider, settings: Settings | None = None
) -> Telemetry:
    """A :class:`Telemetry` over the given providers, built once per (providers, settings).

    With OpenTelemetry's global providers this is rebuilt while they are still proxies (nothing
    configured yet), and kept once real providers are in place, which OpenTelemetry allows only once.
    ``settings`` default to the environment's.
    """
    settings = settings or config.load()
    recorder = SdkRecorder(meter_provider.get_meter(tx.METER_NAME, __version__), settings.bucket_overrides)
    return Telemetry(settings, recorder, tracer_provider)


def global_telemetry() -> Telemetry:
    return telemetry_for(trace.get_tracer_provider(), metrics.get_meter_provider())
