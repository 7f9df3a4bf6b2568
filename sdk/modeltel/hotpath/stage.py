"""Stages and predictions: the per-request API, written for the hot path (a :class:`Stage` here, its
root subclass in :mod:`.prediction`).

A prediction is a root span plus the end-to-end latency histogram and the predictions counter; a stage
is a child span plus a sample in the stage histogram. Both are context managers and decorators (sync,
async, generators, through :mod:`.wrapping`). What keeps a metrics-only prediction with three stages
cheap (``benchmarks/overhead.py`` prints the figures):

* every series is bound once per (model, version, stage) and cached (:mod:`.series`); a record is a
  bisect and a few additions (:mod:`.fastmetrics`);
* the nesting state is one ``ContextVar`` holding the innermost stage (:mod:`.state`), so a stage finds
  its model and whether its trace is sampled without touching OpenTelemetry's context;
* no span is created under a trace that is not sampled: a parent-based sampler would drop it anyway,
  and creating, attaching and ending a non-recording span costs more than all the metrics together.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import taxonomy as tx
from . import otelctx
from .state import current
from .wrapping import run_async_generator, run_generator, wrap

if TYPE_CHECKING:
    from .series import ModelSeries
    from .telemetry import Telemetry

F = TypeVar("F", bound=Callable[..., Any])


class StageOptions(TypedDict, total=False):
    """The keywords of ``stage()`` after its name (:meth:`Telemetry.stage` says what each does)."""

    model_name: str | None
    model_version: str | None
    span_name: str | None
    attributes: Mapping[str, Any] | None
    record: bool


class Stage:
    """One use of a stage. As a decorator, each call gets its own copy.

    Its slots hold what the stage is (fixed where it is declared: name, model, span name, attributes,
    record) and the state of one use, kept flat rather than in sub-objects because every attribute hop
    is paid per request.
    """

    __slots__ = (
        "_attributes",
        "_ctx_token",
        "_frame_token",
        "_held",
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
        "model",
        "sampled",
        "stage",
    )
    # what a generation sets per use (its slots there): the OTel span kind, and a backdated start (unix ns)
    _span_kind = SpanKind.INTERNAL
    _start_ns: int | None = None

    def __init__(
        self,
        telemetry: Telemetry,
        name: str,
        model_name: str | None = None,
        model_version: str | None = None,
        span_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        record: bool = True,
    ) -> None:
        self._t = telemetry
        self._name = name
        self._model_name = model_name
        self._model_version = model_version
        self._span_name = span_name or name
        self._attributes = attributes
        self._record = record
        self._own_span = True  # a stage always starts its own span; a prediction may adopt one
        self._root = False  # a Prediction (a slot, not a class attribute: read twice per request)
        self.stage: str | None = name
        self.counted: BaseException | None = None  # the exception a nested stage already counted

    def _copy(self, args: tuple = (), kwargs: dict | None = None) -> Stage:
        """A fresh use of this stage or prediction (a decorator's ``enter``: it ignores the call's arguments)."""
        copy = self.__class__(
            self._t, self._name, self._model_name, self._model_version, self._span_name, self._attributes
        )
        copy._record, copy._own_span = self._record, self._own_span
        return copy

    # -- context manager ------------------------------------------------------------------------------
    def __enter__(self) -> Stage:
        t = self._t
        self._live = False
        self._span = None
        if not t.enabled:
            return self
        try:
            parent = self._parent = current.get()
            if self._model_name is not None or self._model_version is not None:
                model = t.resolve_model(self._model_name, self._model_version, parent)
            elif parent is not None:
                model = parent.model
            else:  # a root of the configured model: resolve_model's lookup, without its call once it is made
                model = t._default_model or t.resolve_model(None, None, None)
            self.model = model
            if self._root:
                span = self._open_prediction(model, parent)
            else:
                self._series, span_attrs = model.stages.get(self._name) or model.stage(self._name)
                self.sampled = False
                if parent is None or parent.sampled:
                    if self._attributes:
                        span_attrs = model.span_attrs_with(span_attrs, self._attributes)
                    span = self._span = self._start_span(parent, span_attrs)
                else:
                    span = None  # the common unsampled case, without a call
        except Exception as failure:  # a monitoring bug must not reach the model server
            t.monitoring_failed(failure)
            self._span = None
            return self
        if span is not None:
            self.sampled = True
            if otelctx.FAST:  # otelctx.with_span without its call
                ctx = self._otel_ctx = Context(otelctx.get_current())
                otelctx.set_item(ctx, otelctx.SPAN_KEY, span)
            else:
                ctx = self._otel_ctx = otelctx.with_span(span, otelctx.get_current())
            self._ctx_token = otelctx.attach(ctx)
        else:
            self._otel_ctx = None
        self._frame_token = current.set(self)
        self._live = True
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if not self._live:
            return
        elapsed = perf_counter() - self._start
        span = self._span
        try:
            if self._root:
                self._close_prediction(elapsed, exc, span)  # ends its span
            else:
                if self._record:
                    self._series.record(elapsed, span if span is not None and self._t.exemplars else None)
                if exc is not None:
                    self._on_error(exc, span)
                if span is not None:
                    span.end()
        except Exception as failure:  # a monitoring bug must not reach the model server
            self._t.monitoring_failed(failure)
        try:  # noqa: SIM105 (contextlib.suppress costs a microsecond on this hot path)
            current.reset(self._frame_token)
        except ValueError:  # exited in another context (a generator resumed elsewhere): nothing to undo
            pass
        if span is not None:
            try:
                otelctx.reset(self._ctx_token)
            except Exception:  # a foreign token: OpenTelemetry's detach logs it, as it always has
                otelctx.detach(self._ctx_token)

    def _start_span(self, parent: Stage | None, attributes: Mapping[str, Any]) -> trace.Span | None:
        """This stage's span: a child of ``parent``'s span, in its hold when that one is held, unless another
        span was made current inside ``parent`` (then a child of that one); outside any stage, of the
        current span. Outside any stage, or inside an adopting prediction (which has no span of its own),
        it is the trace's outermost modeltel span: the one that is shed under overload."""
        self._held = None  # the hold its span ends into, if any (its children's spans are held too)
        t, name, kind, start = self._t, self._span_name, self._span_kind, self._start_ns
        if parent is None:
            return t.start_span(None, name, attributes, outermost=True, kind=kind, start_time=start)
        if otelctx.get_current() is not parent._otel_ctx:
            outermost = parent._otel_ctx is None
            current_span = otelctx.current_span_context()
            return t.start_span(current_span, name, attributes, outermost=outermost, kind=kind, start_time=start)
        hold = parent._held
        if hold is None:
            spans = t._spans
            if spans is not None:  # the parent's span is one of its light spans, recorded and sampled
                return spans.start(name, attributes, parent._span._context, kind=kind, start_time=start)
            return t.start_span(parent._span.get_span_context(), name, attributes, kind=kind, start_time=start)
        self._held = hold  # inside a held prediction: held too
        return hold.start(name, attributes, parent._span.get_span_context(), kind=kind, start_time=start)

    def _on_error(self, exc: BaseException, span: trace.Span | None) -> None:
        """Mark the span, and hand the error to the enclosing prediction, which counts it if it is counted
        itself: every ``model_errors_total`` sample belongs to a ``model_predictions_total`` sample with the
        same model labels, so errors per prediction is well defined (docs/metrics.md). A stage outside
        any prediction counts no error; its span still says ERROR. A cancellation (:func:`is_cancellation`)
        is none: the span's status stays unset, with the exception as an event (why it ended early), and a
        prediction's span says ``error.type="cancelled"``, which is how a collector counts it from the span."""
        if is_cancellation(exc):
            if span is not None:
                span.record_exception(exc, escaped=True)
                if self._root:
                    span.set_attribute(tx.ATTR_ERROR_TYPE, tx.ERROR_TYPE_CANCELLED)
            return
        if self.counted is not exc:  # a nested stage has not handed it on already
            frame = self
            while frame is not None and not frame._root:
                frame = frame._parent
            if frame is not None:
                frame._error(exc)
        if self._parent is not None:
            self._parent.counted = exc
        if span is not None:
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    async def __aenter__(self) -> Stage:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- while active ---------------------------------------------------------------------------------
    def set_attribute(self, key: str, value: Any) -> None:
        """Add an attribute to this stage's span (no-op when the trace is not sampled)."""
        if self._span is not None:
            self._span.set_attribute(key, value)

    def note_confidence(self, value: float, model: ModelSeries) -> None:
        """Put a confidence recorded for ``model`` inside this stage on its prediction's span (when that one
        is recorded and is ``model``'s): a label the collector joins to the span then calibrates the
        estimated accuracy with it. The latest one recorded stays (a batch's last)."""
        frame: Stage | None = self
        while frame is not None and not frame._root:
            frame = frame._parent
        if frame is not None and frame._span is not None and frame.model is model:
            frame._span.set_attribute(tx.SPAN_ATTR_PREDICTION_CONFIDENCE, value)

    def set_batch_size(self, size: int) -> None:
        """Record the size of the batch this stage works on: a batch-size sample and a span attribute."""
        if self._live:
            self.model.batch.record(float(size))
            if self._span is not None:
                self._span.set_attribute(tx.SPAN_ATTR_BATCH_SIZE, size)

    # -- streams and decorators -----------------------------------------------------------------------
    def stream(self, gen: Any) -> Any:
        """Run generator ``gen`` as this stage: timed from the first item to exhaustion, and active only
        while the generator itself runs, never in the consumer's code between items."""
        return run_generator(self, gen)

    def stream_async(self, agen: Any) -> Any:
        """:meth:`stream` for an async generator."""
        return run_async_generator(self, agen)

    def __call__(self, func: F) -> F:
        return wrap(func, self._copy)  # type: ignore[return-value]


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` ended the work rather than failed it (``CancelledError``: a client left;
    ``GeneratorExit``: a stream closed early; ``KeyboardInterrupt``, ``SystemExit``): not an ``Exception``,
    OpenTelemetry's rule (``use_span`` marks ERROR only for ``Exception``). Counting them as errors would
    page on every disconnect and deploy; a prediction one ends counts ``status="cancelled"``."""
    return not isinstance(exc, Exception)


def _own_code(func: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``func`` with a code object of its own.

    CPython specialises each attribute access in a code object for one type. ``__enter__``/``__exit__``
    (and ``_copy``) shared by Stage and Prediction would see both types at every site and miss their caches on each call
    (0.8 µs more per prediction with three stages, ``benchmarks/overhead.py``); a copy per class keeps
    each site to one type.
    """
    return types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__)
