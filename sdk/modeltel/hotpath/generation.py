"""Generations: a prediction whose end is the end of a token stream.

A :class:`Generation` is a :class:`~.prediction.Prediction` (one ``model_predictions_total`` count, one latency
sample, a span with ``modeltel.kind=prediction``) that also records the OpenTelemetry GenAI metrics of
:mod:`modeltel.taxonomy.genai` once, when it ends: time to first token, time per output token, request
duration and token usage, plus ``gen_ai.*`` span attributes and a first-token span event.

What a token costs is a few float operations on the generation's slots (first, last, count, longest gap):
no object is made or kept per token, so a 100k-token stream holds constant memory, and no histogram is
touched until the end. ``benchmarks/generation.py`` prints the cost per token over a bare iterator.

Why TPOT is recorded once per response, as the mean gap after the first token, rather than once per gap:
the semantic conventions define ``gen_ai.server.time_per_output_token`` as "time per output token
generated after the first token" of a response, which is ``(last token - first token) / (tokens - 1)``;
a sample per gap would weight long responses by their length and cost a histogram record per token. The
longest single gap (a stall) goes on the span instead.

A client's generation (``client=True``: an LLM call) is a CLIENT span, as the semantic conventions say of
an inference client. Opened inside a prediction it is a call of that prediction, not a prediction: a child
span with ``modeltel.kind=client`` and its client-side GenAI series, no prediction count, and its errors
counted by the prediction, so a request that calls an LLM twice is still one prediction (why: the
request is what the server answered; the calls are work it did, like its stages).

A consumer that goes away (``GeneratorExit`` from an early ``close()``, ``asyncio.CancelledError``, any
other :func:`~.stage.is_cancellation`, or :meth:`Generation.cancel`) is neither a success nor an error:
``status="cancelled"`` (see ``docs/generative.md``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Any, TypedDict

from opentelemetry.trace import SpanKind

from .. import taxonomy as tx
from .prediction import Prediction
from .series import CardinalityGuard, ModelSeries
from .stage import Stage, _own_code, is_cancellation
from .state import current

if TYPE_CHECKING:
    from opentelemetry import trace

    from .recorders import Recorder
    from .telemetry import Telemetry

TokensOf = Callable[[Any], int]  # a stream item -> how many output tokens it holds (0: none, a usage chunk)
_MAX_FINISH_REASONS = 16  # one per choice; a bound, not a limit anyone meets
_MAX_GENAI_MODELS = 64  # distinct gen_ai.request.model / response.model values; then "_other"


class GenerationOptions(TypedDict, total=False):
    """The keywords of ``generation()`` after the model (:meth:`Telemetry.generation` says what each does)."""

    operation: str
    request_model: str | None
    response_model: str | None
    input_tokens: int | None
    client: bool
    span_name: str | None
    attributes: Mapping[str, Any] | None
    start_time_ns: int | None


class GenAISeries:
    """The bound GenAI series of one (model, operation, request model, response model, side)."""

    __slots__ = (
        "_failed",
        "_failed_attrs",
        "_recorder",
        "duration",
        "input_tokens",
        "output_tokens",
        "tpot",
        "ttft",
    )

    def __init__(self, recorder: Recorder, model: ModelSeries, labels: Mapping[str, str], *, client: bool) -> None:
        attrs = {**model.metric_attrs, **labels}
        self._recorder = recorder
        self.ttft = None if client else recorder.histogram(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, attrs)
        self.tpot = None if client else recorder.histogram(tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, attrs)
        self.duration = recorder.histogram(_duration(client), attrs)
        usage = tx.GEN_AI_CLIENT_TOKEN_USAGE
        self.input_tokens = recorder.histogram(usage, {**attrs, tx.ATTR_GEN_AI_TOKEN_TYPE: tx.GEN_AI_TOKEN_INPUT})
        self.output_tokens = recorder.histogram(usage, {**attrs, tx.ATTR_GEN_AI_TOKEN_TYPE: tx.GEN_AI_TOKEN_OUTPUT})
        self._failed: dict[str, Any] = {}  # error type (a capped label value) -> duration series
        self._failed_attrs = attrs

    def failed(self, error_type: str, client: bool) -> Any:
        """The duration series of requests that ended with ``error_type`` (a capped label value)."""
        series = self._failed.get(error_type)
        if series is None:
            attrs = {**self._failed_attrs, tx.ATTR_ERROR_TYPE: error_type}
            series = self._failed[error_type] = self._recorder.histogram(_duration(client), attrs)
        return series


def _duration(client: bool) -> tx.Instrument:
    return tx.GEN_AI_CLIENT_OPERATION_DURATION if client else tx.GEN_AI_SERVER_REQUEST_DURATION


class GenAISeriesCache:
    """GenAI series per label set, built once; request/response model names past a cap become ``_other``."""

    def __init__(self, recorder: Recorder, error_guard: CardinalityGuard) -> None:
        self._recorder = recorder
        self.error_guard = error_guard
        self._models = CardinalityGuard("gen_ai model", _MAX_GENAI_MODELS)
        self._series: dict[tuple, GenAISeries] = {}
        self._extra: dict[tuple, tuple[Mapping[str, Any], Any]] = {}
        self._lock = threading.Lock()

    def span_extra(self, operation: str, request: str, attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """A generation's start span attributes beyond the prediction's, one dict per (operation, request
        model, user attributes): the span attribute merge is cached by identity, so it is validated once."""
        key = (operation, request, id(attributes))
        hit = self._extra.get(key)
        if hit is not None:
            return hit[0]
        extra = {tx.ATTR_GEN_AI_OPERATION_NAME: operation, tx.ATTR_GEN_AI_REQUEST_MODEL: request, **(attributes or {})}
        if len(self._extra) < _MAX_GENAI_MODELS * 4:  # beyond, built per call (only when names overflow)
            self._extra[key] = (extra, attributes)  # holding the attributes keeps their id from being reused
        return extra

    def get(self, model: ModelSeries, operation: str, request: str, response: str, client: bool) -> GenAISeries:
        key = (model.name, model.version, operation, request, response, client)
        series = self._series.get(key)
        if series is not None:
            return series
        request, response = self._models(request), self._models(response)
        operation = operation if operation.isidentifier() and len(operation) <= 64 else tx.OVERFLOW_VALUE
        labels = {
            tx.ATTR_GEN_AI_OPERATION_NAME: operation,
            tx.ATTR_GEN_AI_REQUEST_MODEL: request,
            tx.ATTR_GEN_AI_RESPONSE_MODEL: response,
        }
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = GenAISeries(self._recorder, model, labels, client=client)
                if tx.OVERFLOW_VALUE not in (request, response, operation):  # overflowing keys do not grow it
                    self._series[key] = series
        return series


class Generation(Prediction):
    """One generation: ``with modeltel.generation(...) as g:`` or :func:`stream` (``docs/generative.md``).

    While it runs: :meth:`token` for tokens produced (the first one marks time to first token),
    :meth:`first_token` to mark the first token without counting, :meth:`usage` for the authoritative
    input/output token counts, :meth:`finish` for a finish reason per choice, :meth:`cancel` when the
    client went away. It records everything once, when it ends.
    """

    __slots__ = (
        "_cancelled",
        "_client",
        "_finish",
        "_first",
        "_input_tokens",
        "_last",
        "_max_gap",
        "_named",
        "_operation",
        "_output_tokens",
        "_request_model",
        "_span_kind",
        "_start_ns",
        "_tokens",
        "_user_attributes",
        "_within",
        "response_model",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        model_name: str | None = None,
        model_version: str | None = None,
        *,
        operation: str = tx.GEN_AI_OPERATION_TEXT_COMPLETION,
        request_model: str | None = None,
        response_model: str | None = None,
        input_tokens: int | None = None,
        client: bool = False,
        span_name: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        start_time_ns: int | None = None,
    ) -> None:
        Prediction.__init__(self, telemetry, "generate", model_name, model_version, span_name, attributes)
        self._span_kind = SpanKind.CLIENT if client else SpanKind.INTERNAL  # the semconv's inference client span
        self._start_ns = None if start_time_ns is None else int(start_time_ns)
        self._within: Prediction | None = None  # (a client call) the prediction it runs in: that counts it
        self._named = span_name is not None  # else "{operation} {request model}" (the semconv's span name)
        self._operation = operation
        self._request_model = request_model
        self.response_model = response_model  # settable while it runs: the model that answered
        self._client = client
        self._user_attributes = attributes
        self._input_tokens = input_tokens
        self._live = False
        self._span = None
        self._reset()

    def _reset(self) -> None:
        self._first = self._last = self._max_gap = 0.0
        self._tokens = 0
        self._output_tokens: int | None = None
        self._finish: list[str] | None = None
        self._cancelled = False

    _enter = _own_code(Stage.__enter__)
    __exit__ = _own_code(Stage.__exit__)

    def __enter__(self) -> Generation:
        """Enter; with ``start_time_ns``, its clock starts that long ago (TTFT and duration count from it)."""
        self._enter()
        start = self._start_ns
        if start is not None and self._live:
            self._start -= max(0, time_ns() - start) / 1e9
        return self

    def __call__(self, func: Any) -> Any:
        raise TypeError("a generation is not a decorator: use `with modeltel.generation(...)` or modeltel.stream()")

    # -- while it runs ----------------------------------------------------------------------------------
    def token(self, n: int = 1) -> None:
        """``n`` output tokens were produced now (the first call marks the first token)."""
        now = perf_counter()
        last = self._last
        if last:
            gap = now - last
            if gap > self._max_gap:
                self._max_gap = gap
        else:
            self._mark_first(now)
        self._last = now
        self._tokens += n

    def first_token(self) -> None:
        """Mark the first output token now (once; later calls do nothing), without counting it."""
        if not self._first:
            now = self._last = perf_counter()
            self._mark_first(now)

    def usage(self, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        """The request's token counts as the model reports them (they replace what :meth:`token` counted
        in ``gen_ai.client.token.usage``; TPOT still divides by the tokens counted as they came)."""
        if input_tokens is not None:
            self._input_tokens = int(input_tokens)
        if output_tokens is not None:
            self._output_tokens = int(output_tokens)

    def finish(self, *reasons: str) -> None:
        """Finish reason(s), one per choice (``"stop"``, ``"length"``...): ``gen_ai.response.finish_reasons``."""
        found = self._finish if self._finish is not None else []
        found.extend(str(r) for r in reasons[: _MAX_FINISH_REASONS - len(found)])
        self._finish = found

    def cancel(self) -> None:
        """The client went away (a server that notices a disconnect without an exception calls this)."""
        self._cancelled = True

    @property
    def output_tokens(self) -> int:
        """Output tokens so far: the reported usage if given, else those counted."""
        return self._output_tokens if self._output_tokens is not None else self._tokens

    @property
    def reported_output_tokens(self) -> int | None:
        """Output tokens as reported through :meth:`usage`, or None."""
        return self._output_tokens

    @property
    def input_tokens(self) -> int | None:
        """Input tokens as given or reported, or None."""
        return self._input_tokens

    def stream(self, iterable: Iterable[Any] | AsyncIterable[Any], tokens_of: TokensOf | None = None) -> Any:
        """:func:`.streams.stream` with this (not yet entered) generation."""
        from .streams import stream

        return stream(self, iterable, tokens_of)

    def _mark_first(self, now: float) -> None:
        self._first = now
        span = self._span
        if span is not None and self._live:
            try:
                span.add_event(tx.SPAN_EVENT_GEN_AI_FIRST_TOKEN, timestamp=time_ns())
            except Exception as failure:  # a monitoring bug must not reach the model server
                self._t.monitoring_failed(failure)

    # -- the prediction's hooks -------------------------------------------------------------------------
    def _open_prediction(self, model: ModelSeries, parent: Stage | None) -> trace.Span | None:
        """A prediction with ``gen_ai`` span attributes. Inside another prediction (an application's or a
        framework's, not a generation) a server-side generation takes over that one's count, as a
        prediction inside an adopted server span does, so the request is counted once, as the generation;
        a client-side one is a call that prediction makes (:meth:`_open_call`), and takes over nothing."""
        self._reset()
        root = parent
        while root is not None and not root._root:
            root = root._parent
        request = self._request_model or model.name
        if not self._named:
            self._span_name = self._name = f"{self._operation} {request}"
        self._attributes = self._t.genai.span_extra(self._operation, request, self._user_attributes)
        self._within = root if self._client else None
        if self._within is not None:
            return self._open_call(model, parent)
        if root is not None and not isinstance(root, Generation) and root.superseded is None:
            root.superseded = self
        return Prediction._open_prediction(self, model, parent)

    def _open_call(self, model: ModelSeries, parent: Stage | None) -> trace.Span | None:
        """A client call inside a prediction: a child span with ``modeltel.kind=client`` and its client-side
        GenAI series, but no prediction count or latency sample of its own (the enclosing prediction
        counts the request once, and counts the errors raised in the call, as it does a stage's)."""
        self.sampled = False
        if parent is None or not parent.sampled:
            return None
        attrs = model.span_attrs_with(model.client_span_attrs, self._attributes)
        span = self._span = self._start_span(parent, attrs)
        return span

    def _close_prediction(self, elapsed: float, exc: BaseException | None, span: trace.Span | None) -> None:
        if exc is not None and is_cancellation(exc):
            self._cancelled = True  # the consumer left: not an error
        try:
            self._record_genai(elapsed, exc, span)
        except Exception as failure:  # a monitoring bug must not reach the model server
            self._t.monitoring_failed(failure)
        Prediction._close_prediction(self, elapsed, exc, span)

    def _count(self, elapsed: float, exc: BaseException | None, span: trace.Span | None) -> None:
        if self._within is not None:  # a call inside a prediction: that one counts the request
            return
        if not self._cancelled:
            Prediction._count(self, elapsed, exc, span)
            return
        self._series.record(elapsed, span if span is not None and self._t.exemplars else None)
        self.model.count_cancelled()

    def _error(self, exc: BaseException) -> None:
        """An error raised inside it: a call inside a prediction hands it to that prediction."""
        if self._within is not None:
            self._within._error(exc)
        else:
            Prediction._error(self, exc)

    def _genai(self) -> GenAISeries:
        model = self.model
        request = self._request_model or model.name
        return self._t.genai.get(model, self._operation, request, self.response_model or request, self._client)

    def _record_genai(self, elapsed: float, exc: BaseException | None, span: trace.Span | None) -> None:
        """Record the GenAI metrics and span attributes, once, as the generation ends."""
        series = self._genai()
        exemplar = span if span is not None and self._t.exemplars else None  # the span an exemplar names
        first, counted = self._first, self._tokens
        output = self.output_tokens
        ttft = first - self._start if first else None
        tpot = None
        if first:  # the mean gap after the first token: over the tokens counted as they came, else the usage
            steps = counted if counted > 1 else output
            end = self._last if counted > 1 else self._start + elapsed
            tpot = (end - first) / (steps - 1) if steps > 1 else None
        if self._cancelled:
            series.failed(tx.ERROR_TYPE_CANCELLED, self._client).record(elapsed, exemplar)
        elif exc is not None or self.failed:
            kind = self._t.genai.error_guard(type(exc).__name__ if exc is not None else tx.STATUS_ERROR)
            series.failed(kind, self._client).record(elapsed, exemplar)
        else:
            series.duration.record(elapsed, exemplar)
            if ttft is not None and series.ttft is not None:
                series.ttft.record(ttft, exemplar)
            if tpot is not None and series.tpot is not None:
                series.tpot.record(tpot, exemplar)
        if self._input_tokens is not None:
            series.input_tokens.record(float(self._input_tokens), exemplar)
        if output or self._output_tokens is not None:
            series.output_tokens.record(float(output), exemplar)
        if span is not None:
            span.set_attributes(self._span_fields(output, ttft, tpot))

    def _span_fields(self, output: int, ttft: float | None, tpot: float | None) -> dict[str, Any]:
        reasons = list(self._finish or ())
        if self._cancelled and tx.FINISH_REASON_CANCELLED not in reasons:
            reasons.append(tx.FINISH_REASON_CANCELLED)
        fields: dict[str, Any] = {tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: output}
        if self.response_model:
            fields[tx.ATTR_GEN_AI_RESPONSE_MODEL] = self.response_model
        if reasons:
            fields[tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS] = tuple(reasons)
        if self._input_tokens is not None:
            fields[tx.SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS] = self._input_tokens
        if ttft is not None:
            fields[tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN] = ttft
        if tpot is not None:
            fields[tx.SPAN_ATTR_GEN_AI_TIME_PER_OUTPUT_TOKEN] = tpot
        if self._max_gap:
            fields[tx.SPAN_ATTR_GEN_AI_MAX_TOKEN_GAP] = self._max_gap
        return fields


def current_generation() -> Generation | None:
    """The generation the innermost active modeltel stage belongs to, or None (instrumentors feed it)."""
    frame = current.get()
    while frame is not None and not frame._root:
        frame = frame._parent
    return frame if isinstance(frame, Generation) else None
