"""Stages and predictions: the per-request API, written for the hot path.

A prediction is a root span plus the end-to-end latency histogram and the predictions counter; a stage
is a child span plus a sample in the stage histogram. Both are context managers and decorators (sync,
async, generators). The design choices that keep a metrics-only prediction with three stages under
10 µs here:

* every series is bound once per (model, version, stage) and cached; a record is a bisect and a few
  additions (:mod:`modeltel.fastmetrics`);
* modeltel's own nesting state lives in one ``ContextVar`` holding a small frame object, so a stage
  finds its model and whether its trace is sampled without touching OpenTelemetry's context;
* no span is created under a trace that is not sampled: a parent-based sampler would drop it anyway,
  and creating, attaching and ending a non-recording span costs more than all the metrics together.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from time import perf_counter
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import taxonomy as tx
from .config import Settings
from .recorders import Recorder
from .spans import SpanFactory

_log = logging.getLogger("modeltel")
F = TypeVar("F", bound=Callable[..., Any])


class _CardinalityGuard:
    """Admits at most ``cap`` distinct values besides ``always``; the rest collapse to one overflow value."""

    def __init__(self, what: str, cap: int, always: tuple[str, ...] = ()) -> None:
        self._what = what
        self._cap = cap
        self._allowed = set(always)
        self._extra = 0
        self._warned = False
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._allowed:
            return value
        with self._lock:
            if value in self._allowed:
                return value
            if self._extra < self._cap:
                self._extra += 1
                self._allowed.add(value)
                return value
            if not self._warned:
                self._warned = True
                _log.warning(
                    "modeltel: more than %d distinct %s values; %r and later new values are recorded as %r",
                    self._cap,
                    self._what,
                    value,
                    tx.OVERFLOW_VALUE,
                )
        return tx.OVERFLOW_VALUE


class _ModelSeries:
    """Every bound series and span attribute set of one (model name, version), built once."""

    __slots__ = (
        "_t",
        "batch",
        "confidence",
        "errors",
        "failure",
        "latency",
        "metric_attrs",
        "name",
        "prediction_span_attrs",
        "stages",
        "success",
        "version",
    )

    def __init__(self, t: Telemetry, name: str, version: str) -> None:
        self._t = t
        self.name = name
        self.version = version
        attrs = {tx.ATTR_MODEL_NAME: name, tx.ATTR_MODEL_VERSION: version}
        self.metric_attrs = attrs
        r = t.recorder
        self.latency = r.histogram(tx.PREDICTION_LATENCY, attrs)
        self.success = r.counter(tx.PREDICTIONS, {**attrs, tx.ATTR_STATUS: tx.STATUS_SUCCESS})
        self.failure = r.counter(tx.PREDICTIONS, {**attrs, tx.ATTR_STATUS: tx.STATUS_ERROR})
        self.confidence = r.histogram(tx.PREDICTION_CONFIDENCE, attrs)
        self.batch = r.histogram(tx.BATCH_SIZE, attrs)
        self.prediction_span_attrs = {**attrs, tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION}
        self.stages: dict[str, tuple[Any, dict[str, str]]] = {}
        self.errors: dict[str, Any] = {}

    def stage(self, name: str) -> tuple[Any, dict[str, str]]:
        """(bound stage histogram, stage span attributes), built on first use of ``name``."""
        label = self._t.stage_guard(name)
        series = self._t.recorder.histogram(tx.STAGE_LATENCY, {**self.metric_attrs, tx.ATTR_STAGE: label})
        span_attrs = {**self.metric_attrs, tx.SPAN_ATTR_KIND: tx.SPAN_KIND_STAGE, tx.SPAN_ATTR_STAGE: label}
        if label == name:  # cache admitted names only, so overflowing names cannot grow this dict
            self.stages[name] = (series, span_attrs)
        return series, span_attrs

    def count_error(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        counter = self.errors.get(kind)
        if counter is None:
            label = self._t.error_guard(kind)
            counter = self._t.recorder.counter(tx.ERRORS, {**self.metric_attrs, tx.ATTR_ERROR_TYPE: label})
            if label == kind:
                self.errors[kind] = counter
        counter.add(1)


_current: ContextVar[Stage | None] = ContextVar("modeltel_frame", default=None)


def current_stage() -> str | None:
    """The canonical name of the innermost active modeltel stage, or None (instrumentors use this)."""
    frame = _current.get()
    return frame.stage if frame is not None else None


def in_prediction() -> bool:
    """Whether a modeltel prediction or stage is active in this context."""
    return _current.get() is not None


class Telemetry:
    """Binds the stage/prediction API to one tracer and one recorder.

    ``modeltel.init()`` builds one for its pipeline; :func:`modeltel.stage` and friends use it, or one
    built from OpenTelemetry's global providers when ``init()`` was not called.
    """

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
        self.stage_guard = _CardinalityGuard("stage", settings.max_stages, tx.CANONICAL_STAGES)
        self.error_guard = _CardinalityGuard("error_type", settings.max_error_types)
        self._models: dict[tuple[str, str], _ModelSeries] = {}
        self._models_lock = threading.Lock()
        self._tracer, self._tracing, self._root_off, self._parent_based = _tracing_mode(tracer_provider)
        self._spans = span_factory
        self._failure_logged = False
        self.exemplars = settings.exemplar_filter != "always_off"  # sampled spans become exemplars

    # -- series -------------------------------------------------------------------------------------
    def model(self, name: str | None = None, version: str | None = None) -> _ModelSeries:
        key = (name or self.settings.model_name, version or self.settings.model_version)
        series = self._models.get(key)
        if series is None:
            with self._models_lock:
                series = self._models.get(key)
                if series is None:
                    series = self._models[key] = _ModelSeries(self, *key)
        return series

    def _resolve_model(self, name: str | None, version: str | None, parent: Stage | None) -> _ModelSeries:
        if name is None and version is None and parent is not None:
            return parent.model
        if parent is not None and name is None:
            name = parent.model.name
        return self.model(name, version)

    def _start_span(self, parent: Stage | None, name: str, attributes: Mapping[str, Any]) -> trace.Span | None:
        """A span for a prediction or stage, or None under a trace that is not sampled (or no tracing)."""
        if parent is not None:
            if not parent.sampled:
                return None
            if otel_context.get_current() is parent._otel_ctx:  # nothing was started in between
                ctx = parent._span.get_span_context()
            else:
                ctx = trace.get_current_span().get_span_context()
        elif not self._tracing:
            return None
        else:
            ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            if not ctx.trace_flags.sampled and self._parent_based:
                return None
        elif self._root_off:
            return None
        if self._spans is not None:
            return self._spans.start(name, attributes, ctx)
        span = self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        return span if span.is_recording() else None

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
        return Stage(self, name, model_name, model_version, span_name, attributes, record, False)

    def prediction(
        self,
        model_name: str | None = None,
        model_version: str | None = None,
        *,
        span_name: str = "predict",
        attributes: Mapping[str, Any] | None = None,
        own_span: bool = True,
    ) -> Stage:
        """A prediction root span, latency sample and ``model_predictions_total`` count.

        ``own_span=False`` adopts the current span (an HTTP server span, say) instead of starting one:
        nested stages become its children and it gets the model attributes. Such a prediction gives
        way to a prediction the application opens inside it, so a request is counted once. Its outcome
        can be set from what the framework answered with :meth:`Stage.set_outcome`.
        """
        return Stage(self, span_name, model_name, model_version, span_name, attributes, True, True, own_span)

    def monitor_prediction(self, model_name: str | None = None, model_version: str | None = None) -> Callable[[F], F]:
        """Decorator form of :meth:`prediction`; also records ``confidence`` found on the result."""
        return self.prediction(model_name, model_version)

    def record_confidence(self, value: float, model_name: str | None = None, model_version: str | None = None) -> None:
        if self.enabled and self.settings.record_confidence:
            self._resolve_model(model_name, model_version, _current.get()).confidence.record(float(value))

    def record_batch_size(self, size: int, model_name: str | None = None, model_version: str | None = None) -> None:
        if self.enabled:
            self._resolve_model(model_name, model_version, _current.get()).batch.record(float(size))

    def set_online_accuracy(
        self, value: float, model_name: str | None = None, model_version: str | None = None
    ) -> None:
        if self.enabled:
            model = self._resolve_model(model_name, model_version, _current.get())
            self.recorder.gauge(tx.ONLINE_ACCURACY, model.metric_attrs).set(float(value))


def _tracing_mode(provider: trace.TracerProvider | None) -> tuple[trace.Tracer, bool, bool, bool]:
    """(tracer, tracing on, root spans never sampled, sampler respects a parent's decision)."""
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

    from . import __version__

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


def _confidence_of(result: Any) -> float | None:
    """A ``confidence`` attribute or key of a prediction's result, when it is a number."""
    value = result.get("confidence") if type(result) is dict else getattr(result, "confidence", None)
    if value is None or type(value) is bool:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class Stage:
    """One use of a stage or prediction. As a decorator, each call gets its own copy."""

    __slots__ = (
        "_adopted",
        "_attributes",
        "_ctx_token",
        "_frame_token",
        "_live",
        "_model_name",
        "_model_version",
        "_name",
        "_otel_ctx",
        "_own_span",
        "_parent",
        "_record",
        "_root",
        "_series",
        "_span",
        "_span_name",
        "_start",
        "_t",
        "counted",
        "failed",
        "model",
        "sampled",
        "stage",
        "superseded",
    )

    def __init__(
        self,
        t: Telemetry,
        name: str,
        model_name: str | None,
        model_version: str | None,
        span_name: str | None,
        attributes: Mapping[str, Any] | None,
        record: bool,
        root: bool,
        own_span: bool = True,
    ) -> None:
        self._t = t
        self._name = name
        self._model_name = model_name
        self._model_version = model_version
        self._span_name = span_name or name
        self._attributes = attributes
        self._record = record
        self._root = root
        self._own_span = own_span
        self.stage = None if root else name
        self.counted: BaseException | None = None  # the exception a nested stage already counted
        self.superseded = False  # an adopting prediction with the application's own prediction inside
        self.failed = False

    def _copy(self) -> Stage:
        return Stage(
            self._t,
            self._name,
            self._model_name,
            self._model_version,
            self._span_name,
            self._attributes,
            self._record,
            self._root,
            self._own_span,
        )

    # -- context manager ------------------------------------------------------------------------------
    def __enter__(self) -> Stage:
        t = self._t
        self._live = False
        self._span = None
        if not t.enabled:
            return self
        try:
            parent = self._parent = _current.get()
            if parent is not None and self._model_name is None and self._model_version is None:
                model = parent.model
            else:
                model = t._resolve_model(self._model_name, self._model_version, parent)
            self.model = model
            if self._root:
                self._series = model.latency
                span_attrs = model.prediction_span_attrs
                if parent is not None and parent._root and not parent._own_span:
                    parent.superseded = True
            else:
                self._series, span_attrs = model.stages.get(self._name) or model.stage(self._name)
            if not self._own_span:
                span = None  # adopts the current span; nested stages ask the tracer about sampling
                self._adopted = None
                self._annotate_adopted()
            elif parent is None or parent.sampled:
                span = self._span = t._start_span(parent, self._span_name, span_attrs)
                if span is not None and self._attributes:
                    span.set_attributes(self._attributes)
            else:
                span = None  # the common unsampled case, without a call
        except Exception as failure:  # a monitoring bug must not reach the model server
            t.monitoring_failed(failure)
            self._span = None
            return self
        if span is not None:
            self.sampled = True
            self._otel_ctx = trace.set_span_in_context(span)
            self._ctx_token = otel_context.attach(self._otel_ctx)
        else:
            self.sampled = not self._own_span and t._tracing
            self._otel_ctx = None
        self._frame_token = _current.set(self)
        self._live = True
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if not self._live:
            return
        elapsed = perf_counter() - self._start
        span = self._span
        try:
            if self._record and not self.superseded:
                self._series.record(
                    elapsed, span.get_span_context() if span is not None and self._t.exemplars else None
                )
            if exc is not None:
                self._on_error(exc_type, exc, span)
            if self._root and not self.superseded:
                (self.model.failure if exc is not None or self.failed else self.model.success).add(1)
                if not self._own_span:
                    self._annotate_adopted()  # a server span that only started inside (Flask's) is current now
            if span is not None:
                span.end()
        except Exception as failure:  # a monitoring bug must not reach the model server
            self._t.monitoring_failed(failure)
        try:  # noqa: SIM105 (contextlib.suppress costs a microsecond on this hot path)
            _current.reset(self._frame_token)
        except ValueError:  # exited in another context (a generator resumed elsewhere): nothing to undo
            pass
        if span is not None:
            otel_context.detach(self._ctx_token)

    def _on_error(self, exc_type: Any, exc: BaseException, span: trace.Span | None) -> None:
        if self.counted is not exc:  # a nested stage has not counted it already
            self.model.count_error(exc)
        if self._parent is not None:
            self._parent.counted = exc
        if span is not None:
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {exc}"))

    async def __aenter__(self) -> Stage:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def _annotate_adopted(self) -> None:
        """Give the adopted span the prediction's model attributes, once, while it is recording."""
        adopted = trace.get_current_span()
        if adopted.is_recording() and self._adopted is not adopted:
            adopted.set_attributes(self.model.prediction_span_attrs)
            self._adopted = adopted

    def set_outcome(self, ok: bool) -> None:
        """Count this prediction as a success or an error (an exception is always an error)."""
        self.failed = not ok

    def set_attribute(self, key: str, value: Any) -> None:
        """Add an attribute to this stage's span (no-op when the trace is not sampled)."""
        if self._span is not None:
            self._span.set_attribute(key, value)

    def _observe_result(self, result: Any) -> None:
        if self._root and self._live and self._t.settings.record_confidence:
            confidence = _confidence_of(result)
            if confidence is not None:
                self.model.confidence.record(confidence)

    # -- streams --------------------------------------------------------------------------------------
    def _suspend(self) -> None:
        """Leave the consumer's context as it was while the stream waits at a ``yield``."""
        if self._live:
            try:  # noqa: SIM105
                _current.reset(self._frame_token)
            except ValueError:
                pass
            if self._span is not None:
                otel_context.detach(self._ctx_token)

    def _resume(self) -> None:
        if self._live:
            self._frame_token = _current.set(self)
            if self._span is not None:
                self._ctx_token = otel_context.attach(self._otel_ctx)

    def stream(self, gen: Any) -> Any:
        """Run generator ``gen`` as this stage: timed from the first item to exhaustion, and active only
        while the generator itself runs, never in the consumer's code between items."""
        self.__enter__()
        method, value = gen.send, None
        try:
            while True:
                try:
                    item = method(value)
                except StopIteration as stop:
                    self.__exit__(None, None, None)
                    return stop.value
                self._suspend()
                try:
                    value = yield item
                    method = gen.send
                except GeneratorExit:
                    self._resume()
                    gen.close()
                    raise
                except BaseException as thrown:
                    method, value = gen.throw, thrown
                self._resume()
        except GeneratorExit:  # the consumer stopped early: not an error
            self.__exit__(None, None, None)
            raise
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def stream_async(self, agen: Any) -> Any:
        """:meth:`stream` for an async generator."""
        return _streamed_async(lambda: self, lambda: agen)()

    # -- decorator ------------------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if inspect.isasyncgenfunction(func):
            return functools.wraps(func)(_streamed_async(self._copy, func))  # type: ignore[return-value]
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._copy() as s:
                    result = await func(*args, **kwargs)
                    s._observe_result(result)
                    return result

            return async_wrapper  # type: ignore[return-value]
        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                return (yield from self._copy().stream(func(*args, **kwargs)))

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._copy() as s:
                result = func(*args, **kwargs)
                s._observe_result(result)
                return result

        return wrapper  # type: ignore[return-value]


def _streamed_async(new_stage: Callable[[], Stage], new_agen: Callable[..., Any]) -> Callable[..., Any]:
    """An async generator function running ``new_agen(...)`` as the stage ``new_stage()`` (see
    :meth:`Stage.stream`). It is itself an async generator function, so frameworks that dispatch on
    ``inspect.isasyncgenfunction`` see the kind they expect, and ``asend``/``athrow``/``aclose`` pass through.
    """

    async def streamed(*args: Any, **kwargs: Any) -> Any:
        stage = new_stage()
        agen = new_agen(*args, **kwargs)
        stage.__enter__()
        method, value = agen.asend, None
        try:
            while True:
                try:
                    item = await method(value)
                except StopAsyncIteration:
                    stage.__exit__(None, None, None)
                    return
                stage._suspend()
                try:
                    value = yield item
                    method = agen.asend
                except GeneratorExit:
                    stage._resume()
                    await agen.aclose()
                    raise
                except BaseException as thrown:
                    method, value = agen.athrow, thrown
                stage._resume()
        except GeneratorExit:  # the consumer stopped early: not an error
            stage.__exit__(None, None, None)
            raise
        except BaseException as exc:
            stage.__exit__(type(exc), exc, exc.__traceback__)
            raise

    return streamed
