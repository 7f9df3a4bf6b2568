"""Predictions: the root of a request's telemetry (a span of its own or an adopted one, the end-to-end
latency histogram, the predictions counter by status, and the ``confidence`` a decorated function returns).

A :class:`Prediction` is a :class:`~.stage.Stage` whose ``__enter__``/``__exit__`` are per-class copies
(:func:`~.stage._own_code`), so the attribute caches of both stay monomorphic on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from opentelemetry import trace

from . import otelctx
from .stage import F, Stage, _own_code, is_cancellation
from .wrapping import wrap

if TYPE_CHECKING:
    from .held import SpanHold
    from .series import ModelSeries
    from .telemetry import Telemetry


class PredictionOptions(TypedDict, total=False):
    """The keywords of ``prediction()`` (:meth:`Telemetry.prediction` says what each does)."""

    span_name: str | None
    attributes: Mapping[str, Any] | None
    own_span: bool


class Prediction(Stage):
    """One use of a prediction: a root span (or an adopted one), the end-to-end latency histogram and
    the predictions counter by status. Decorating a function also records a ``confidence`` found in its
    result."""

    __slots__ = ("_adopted", "_errors", "_hold", "failed", "superseded")

    def __init__(
        self,
        telemetry: Telemetry,
        name: str = "predict",
        model_name: str | None = None,
        model_version: str | None = None,
        span_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        own_span: bool = True,
    ) -> None:
        """Stage's parameters (``name`` is its span's name); Stage's fields, set here rather than through
        super(): one call less per request."""
        self._t = telemetry
        self._name = self._span_name = span_name or name
        self._model_name = model_name
        self._model_version = model_version
        self._attributes = attributes
        self._record = True
        self._root = True
        self.counted = None
        self.stage = None
        self._own_span = own_span
        self.superseded: Prediction | None = None  # (adopting) the application's own prediction inside it
        self.failed = False
        self._errors: list[BaseException] | None = None  # raised inside it, counted when it is
        self._hold: SpanHold | None = None  # the hold it decides, when it is held (keep_slow_and_failed)

    __enter__ = _own_code(Stage.__enter__)
    __exit__ = _own_code(Stage.__exit__)
    _copy = _own_code(Stage._copy)

    def _open_prediction(self, model: ModelSeries, parent: Stage | None) -> trace.Span | None:
        """Bind the prediction's series and start (or adopt) its span; sets ``sampled``."""
        self._series = model.latency
        if parent is not None and parent._root and not parent._own_span:  # an adopting prediction
            parent.superseded = self
        if not self._own_span:  # adopts the current span; nested stages ask the tracer about sampling
            self.sampled = self._t.tracing
            self._adopted = None
            self._annotate_adopted()
            return None
        self.sampled = False
        if parent is not None and not parent.sampled:
            return None
        never = parent is None and self._t.no_roots and otelctx.no_current_span()  # (without three calls)
        if never and self._t.keep_threshold is None:
            return None  # a root that is never sampled (metrics only) and never held: no attributes needed
        attrs = model.prediction_span_attrs
        if self._attributes:
            attrs = model.span_attrs_with(attrs, self._attributes)
        span = None if never else self._start_span(parent, attrs)
        self._span = span
        # held when it is the outermost modeltel span: a root, or inside a framework's adopted server span
        if (
            span is None
            and self._t.keep_threshold is not None
            and (parent is None or (parent._root and not parent._own_span))
        ):
            hold = self._hold = self._held = self._t.span_hold()
            if hold is not None:
                parent_span = trace.get_current_span().get_span_context()
                kind, start = self._span_kind, self._start_ns
                span = self._span = hold.start(self._span_name, attrs, parent_span, kind=kind, start_time=start)
        return span

    def _close_prediction(self, elapsed: float, exc: BaseException | None, span: trace.Span | None) -> None:
        """Count the prediction and end its span (a held one as soon as its fate is known)."""
        if exc is not None:
            self._on_error(exc, span)
        if self._hold is not None:
            span = self._settle(elapsed, exc, span)
        elif span is not None:
            span.end()
        counted = self.superseded
        if counted is None:  # counted itself
            counted = self
            self._count(elapsed, exc, span)
        if self._errors is not None:  # a superseded one's go to the prediction that took over
            for error in self._errors:
                counted.model.count_error(error)

    def _count(self, elapsed: float, exc: BaseException | None, span: trace.Span | None) -> None:
        """Record the latency sample and the predictions count: "cancelled" when a cancellation ended it."""
        self._series.record(elapsed, span if span is not None and self._t.exemplars else None)
        if exc is not None and is_cancellation(exc):
            self.model.count_cancelled()
        else:
            (self.model.failure if exc is not None or self.failed else self.model.success).add(1)
        if not self._own_span:
            self._annotate_adopted()  # a server span that only started inside (Flask's) is current now

    def _settle(self, elapsed: float, exc: BaseException | None, span: Any) -> Any:
        """End a held prediction's span and keep its spans if it failed or was slow; the span's kept copy."""
        hold, self._hold = self._hold, None
        if (exc is not None and not is_cancellation(exc)) or self.failed or self._errors is not None:
            reason = "error"
        elif elapsed > self._t.keep_threshold:
            reason = "slow"
        else:
            reason = None
        span.end()
        if reason is None:
            return None
        return hold.release(reason).get(span)

    def _annotate_adopted(self) -> None:
        """Give the adopted span the prediction's model attributes, once, while it is recording."""
        adopted = trace.get_current_span()
        if adopted.is_recording() and self._adopted is not adopted:
            adopted.set_attributes(self.model.prediction_span_attrs)
            self._adopted = adopted

    def _error(self, exc: BaseException) -> None:
        if self._errors is None:
            self._errors = [exc]
        else:
            self._errors.append(exc)

    def set_outcome(self, ok: bool) -> None:
        """Count this prediction as a success or an error (an exception is always an error)."""
        self.failed = not ok

    def _observe_result(self, result: Any, args: tuple, kwargs: dict) -> None:
        """Record a ``confidence`` found in a decorated prediction's result (an ``after`` for :func:`wrap`)."""
        if self._live and self._t.settings.record_confidence:  # (wrap leaves out results of _NO_CONFIDENCE's types)
            confidence = _confidence_of(result)
            if confidence is not None:
                self.model.confidence.record(confidence)
                self.note_confidence(confidence, self.model)

    def __call__(self, func: F) -> F:
        return wrap(func, self._copy, Prediction._observe_result, after_skips=_NO_CONFIDENCE)  # type: ignore[return-value]


# built-in result types with no ``confidence`` attribute or key (their instances take no attributes; a
# subclass is another type): the decorator's wrapper does not call _observe_result for them
_NO_CONFIDENCE = frozenset((int, float, str, bytes, bool, list, tuple, type(None)))


def _confidence_of(result: Any) -> float | None:
    """A ``confidence`` attribute or key of a prediction's result, when it is a number."""
    value = result.get("confidence") if type(result) is dict else getattr(result, "confidence", None)
    if value is None or type(value) is bool:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
