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
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import SpanContext, SpanKind

from .. import config
from .. import taxonomy as tx
from .._version import __version__
from ..config import Settings
from . import otelctx
from .generation import GenAISeriesCache, Generation, GenerationOptions
from .held import SpanHold
from .prediction import Prediction, PredictionOptions
from .recorders import Recorder, SdkRecorder
from .series import CardinalityGuard, ModelSeries
from .spans import SpanFactory
from .stage import Stage, StageOptions
from .state import current

if TYPE_CHECKING:
    from typing_extensions import Unpack

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
        self._stage_guard = CardinalityGuard(
            "stage", settings.max_stages, (*tx.CANONICAL_STAGES, *tx.GENERATION_STAGES)
        )
        self._error_guard = CardinalityGuard("error_type", settings.max_error_types)
        self.genai = GenAISeriesCache(recorder, self._error_guard)  # generations' gen_ai.* series
        self._models: dict[tuple[str, str], ModelSeries] = {}
        self._models_lock = threading.Lock()
        self._default_model: ModelSeries | None = None  # model(): the configured model's series
        self._tracer, self.tracing, self._root_off, self._parent_based = _tracing_mode(tracer_provider)
        self.no_roots = not self.tracing or self._root_off  # a span with no valid current span is never sampled
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
        """The model a stage records under: its own, else its parent's name, else the configured one.

        A wrapper names the model on every call (KServe's stages inside KServe's prediction): when that
        is its parent's model, of this telemetry, the parent's series are the ones :meth:`model` would find."""
        if name is None and version is None:
            if parent is not None:
                return parent.model
            model = self._default_model  # every root prediction's: looked up once (series are never evicted)
            if model is None:
                model = self._default_model = self.model()
            return model
        if parent is not None:
            model = parent.model
            if (
                parent._t is self
                and (name is None or name == model.name)
                and (version or self.settings.model_version) == model.version
            ):
                return model
            if name is None:
                name = model.name
        return self.model(name, version)

    def start_span(
        self,
        parent: SpanContext | None,
        name: str,
        attributes: Mapping[str, Any],
        *,
        outermost: bool = False,
        kind: SpanKind = SpanKind.INTERNAL,
        start_time: int | None = None,
    ) -> trace.Span | None:
        """A span for a prediction or stage under ``parent`` (None: under the current span), or None under a
        trace that is not sampled (or with no tracing), or for the ``outermost`` modeltel span of a trace
        while the span buffer sheds traces (:mod:`.admission`). ``kind``: CLIENT for a client's generation;
        ``start_time``: unix ns, default now (a backdated generation's)."""
        if parent is None:
            if not self.tracing:
                return None
            parent = otelctx.current_span_context()
        if parent.is_valid:
            if not parent.trace_flags.sampled and self._parent_based:
                return None
        elif self._root_off:
            return None
        if self._spans is not None:
            return self._spans.start(name, attributes, parent, outermost=outermost, kind=kind, start_time=start_time)
        span = self._tracer.start_span(name, kind=kind, attributes=attributes, start_time=start_time)
        return span if span.is_recording() else None

    def may_trace(self, parent: Stage | None) -> bool:
        """Whether a stage opened now under ``parent`` (the innermost active stage) can get a span; False
        when it surely gets none, so a wrapper can skip work that only feeds span attributes."""
        if parent is not None:
            return parent.sampled
        return self.tracing and not self._root_off

    def span_hold(self) -> SpanHold | None:
        """A hold for the spans of a prediction the sampler dropped (``keep_slow_and_failed``), or None
        when spans cannot be held (no light spans, or no tracing)."""
        if self._spans is None or not self.tracing:
            return None
        return SpanHold(self._spans)

    def monitoring_failed(self, failure: Exception) -> None:
        """Log a failure inside modeltel once (with its traceback), then quietly; the request goes on."""
        if not self._failure_logged:
            self._failure_logged = True
            _log.error("modeltel: recording failed; the request continues unmonitored", exc_info=failure)

    # -- API ----------------------------------------------------------------------------------------
    def stage(self, name: str, **options: Unpack[StageOptions]) -> Stage:
        """A stage span and ``model_stage_latency_seconds`` sample; context manager or decorator.

        ``options`` (keywords, :class:`StageOptions`): ``model_name`` / ``model_version`` (default: the
        enclosing stage's model, else the configured one), ``span_name`` (default: ``name``),
        ``attributes`` (added to the span only), ``record=False`` to make only the span (model libraries
        nested in a framework's stage use it, so the stage is not counted twice).
        """
        return Stage(self, name, **options)

    def prediction(
        self, model_name: str | None = None, model_version: str | None = None, **options: Unpack[PredictionOptions]
    ) -> Prediction:
        """A prediction root span, latency sample and ``model_predictions_total`` count.

        ``options`` (keywords, :class:`PredictionOptions`): ``span_name`` (default ``predict``),
        ``attributes`` (added to the span only), and ``own_span=False`` to adopt the current span (an HTTP
        server span, say) instead of starting one: nested stages become its children and it gets the
        model attributes. Such a prediction gives way to a prediction the application opens inside it,
        so a request is counted once. Its outcome can be set from what the framework answered with
        :meth:`Prediction.set_outcome`.
        """
        return Prediction(self, "predict", model_name, model_version, **options)

    def generation(
        self, model_name: str | None = None, model_version: str | None = None, **options: Unpack[GenerationOptions]
    ) -> Generation:
        """A prediction whose end is a token stream's end, with the GenAI metrics (``docs/generative.md``).

        ``options`` (keywords): ``operation`` (``gen_ai.operation.name``, default ``text_completion``),
        ``request_model`` / ``response_model`` (``gen_ai.request.model`` / ``response.model``, default the
        model name), ``input_tokens``, ``client=True`` for a client's view (``gen_ai.client.operation.duration``,
        no server TTFT/TPOT, a CLIENT span; inside a prediction, a call of that prediction that counts no
        prediction of its own), ``span_name`` (default ``"{operation} {request_model}"``), ``attributes``,
        ``start_time_ns`` (unix ns: a start before the generation was opened, e.g. the request's arrival).
        """
        return Generation(self, model_name, model_version, **options)

    def monitor_prediction(self, model_name: str | None = None, model_version: str | None = None) -> Prediction:
        """:meth:`prediction` under the monitoring spec's decorator name: ``@telemetry.monitor_prediction()``."""
        return self.prediction(model_name, model_version)

    def record_confidence(self, value: float, model_name: str | None = None, model_version: str | None = None) -> None:
        if self.enabled and self.settings.record_confidence:
            frame, value = current.get(), float(value)
            model = self.resolve_model(model_name, model_version, frame)
            model.confidence.record(value)
            if frame is not None:
                frame.note_confidence(value, model)

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
