"""The GenAI series of a generation span (a prediction span with ``gen_ai.operation.name``), for apps that
send traces only: time to first token, time per output token, request duration and token usage, under the
labels and with the rules the SDK records them by (``modeltel.hotpath.generation``), so that when the app's
own ``gen_ai_*`` series arrive they continue these (``store.handover``).

A modeltel SDK puts TTFT and TPOT on the span (``modeltel.gen_ai.*``); any other OpenTelemetry app has the
semantic conventions' attributes and, at best, the ``gen_ai.first_token`` event: TTFT is then the event's
time less the span's start, TPOT ``(end - first token) / (output tokens - 1)`` when more than one token
came out. As in the SDK, TTFT and TPOT count successful generations only, a failed or cancelled one goes
into the request duration under its ``error_type``, and token usage counts every outcome. A span of kind
CLIENT is the client's view: ``gen_ai.client.operation.duration`` and no TTFT/TPOT.
"""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from modeltel import taxonomy as tx
from modeltel_collector.process import overflow
from modeltel_collector.store.metrics import HISTOGRAM, MetricStore, Observation, ResourceState
from modeltel_collector.translate import label_name

# the span attributes read here; spanmetrics hands them over among the attributes only its facts read
OPERATION = tx.ATTR_GEN_AI_OPERATION_NAME
ATTRS = frozenset(
    (
        OPERATION,
        tx.ATTR_GEN_AI_REQUEST_MODEL,
        tx.ATTR_GEN_AI_RESPONSE_MODEL,
        tx.SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS,
        tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
        tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS,
        tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN,
        tx.SPAN_ATTR_GEN_AI_TIME_PER_OUTPUT_TOKEN,
        tx.ATTR_ERROR_TYPE,
    )
)
_OP_LABEL, _REQ_LABEL = label_name(tx.ATTR_GEN_AI_OPERATION_NAME), label_name(tx.ATTR_GEN_AI_REQUEST_MODEL)
_RESP_LABEL, _TYPE_LABEL = label_name(tx.ATTR_GEN_AI_RESPONSE_MODEL), label_name(tx.ATTR_GEN_AI_TOKEN_TYPE)
_ERROR_LABEL = label_name(tx.ATTR_ERROR_TYPE)
_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
_NS = 1_000_000_000  # a derived observation holds seconds as integer ns, token counts as they are
_MAX_OPERATION = 64  # the SDK's bound on an operation name; past it, or not an identifier: "_other"


class Generation(NamedTuple):
    """What one generation span adds to the GenAI series; seconds and token counts, None where unknown."""

    labels: tuple[tuple[str, str], ...]  # gen_ai_operation_name, gen_ai_request_model, gen_ai_response_model
    client: bool
    error_type: str | None  # None: a success
    ttft: float | None
    tpot: float | None
    input_tokens: int | None
    output_tokens: int | None
    duration: float
    trace_id: bytes
    span_id: bytes
    end: int  # unix ns

    @property
    def cancelled(self) -> bool:
        return self.error_type == tx.ERROR_TYPE_CANCELLED


def read_generation(sp, extra: dict, model: str, failed: bool) -> Generation | None:
    """The generation a prediction span describes (``extra``: its attributes among ``ATTRS``), or None."""
    op = extra.get(OPERATION)
    if op is None:
        return None
    operation = op.string_value
    if not (operation.isidentifier() and len(operation) <= _MAX_OPERATION):
        operation = tx.OVERFLOW_VALUE
    request = _text(extra, tx.ATTR_GEN_AI_REQUEST_MODEL) or model or tx.UNKNOWN_VALUE
    response = _text(extra, tx.ATTR_GEN_AI_RESPONSE_MODEL) or request
    start, end = sp.start_time_unix_nano, sp.end_time_unix_nano
    duration = (end - start) / 1e9 if end > start else 0.0
    output = _int(extra, tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS)
    ttft, tpot = number(extra, tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN), None
    first = _event_time(sp, tx.SPAN_EVENT_GEN_AI_FIRST_TOKEN)
    if ttft is None and first is not None and start <= first <= end:
        ttft = (first - start) / 1e9
    if ttft is not None:  # the SDK's own mean gap (last token, not the span's end), else the conventions'
        tpot = number(extra, tx.SPAN_ATTR_GEN_AI_TIME_PER_OUTPUT_TOKEN)
        if tpot is None and output is not None and output > 1:
            tpot = max(duration - ttft, 0.0) / (output - 1)
    if failed:
        error_type = _error_type(sp, extra)
    else:
        reasons = extra.get(tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS)
        cancelled = reasons is not None and tx.FINISH_REASON_CANCELLED in _strings(reasons)
        error_type = tx.ERROR_TYPE_CANCELLED if cancelled else None
    labels = ((_OP_LABEL, operation), (_REQ_LABEL, request), (_RESP_LABEL, response))
    inputs = _int(extra, tx.SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS)
    return Generation(
        labels, sp.kind == _CLIENT, error_type, ttft, tpot, inputs, output, duration, sp.trace_id, sp.span_id, end
    )


def observations(gen: Generation) -> list[tuple[tx.Instrument, tuple[tuple[str, str], ...], float]]:
    """(instrument, labels beyond the model's and the scope's, value) of each GenAI sample the SDK would
    record for this generation."""
    duration = tx.GEN_AI_CLIENT_OPERATION_DURATION if gen.client else tx.GEN_AI_SERVER_REQUEST_DURATION
    if gen.error_type is not None:
        out = [(duration, (*gen.labels, (_ERROR_LABEL, gen.error_type)), gen.duration)]
    else:
        out = [(duration, gen.labels, gen.duration)]
        if not gen.client and gen.ttft is not None:
            out.append((tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, gen.labels, gen.ttft))
        if not gen.client and gen.tpot is not None:
            out.append((tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, gen.labels, gen.tpot))
    usage = tx.GEN_AI_CLIENT_TOKEN_USAGE
    if gen.input_tokens is not None:
        out.append((usage, (*gen.labels, (_TYPE_LABEL, tx.GEN_AI_TOKEN_INPUT)), float(gen.input_tokens)))
    if gen.output_tokens:  # the SDK records none for a generation that counted no token and reported no usage
        out.append((usage, (*gen.labels, (_TYPE_LABEL, tx.GEN_AI_TOKEN_OUTPUT)), float(gen.output_tokens)))
    return out


def _error_type(sp, extra: dict) -> str:
    """The SDK's label for a failed generation: the exception's class name, else ``error``."""
    explicit = _text(extra, tx.ATTR_ERROR_TYPE)
    if explicit:
        return explicit
    for ev in sp.events:
        if ev.name == "exception":
            for kv in ev.attributes:
                if kv.key == "exception.type" and kv.value.string_value:
                    return kv.value.string_value.rsplit(".", 1)[-1]  # module.Class: the SDK names the class
    return tx.STATUS_ERROR


def _event_time(sp, name: str) -> int | None:
    for ev in sp.events:
        if ev.name == name:
            return ev.time_unix_nano
    return None


def _text(extra: dict, key: str) -> str:
    v = extra.get(key)
    return v.string_value if v is not None else ""


def _int(extra: dict, key: str) -> int | None:
    n = number(extra, key)
    return None if n is None else int(n)


def number(extra: dict, key: str) -> float | None:
    v = extra.get(key)
    if v is None:
        return None
    which = v.WhichOneof("value")
    if which == "double_value":
        return v.double_value
    return float(v.int_value) if which == "int_value" else None


def _strings(v) -> list[str]:
    if v.WhichOneof("value") == "array_value":
        return [x.string_value for x in v.array_value.values]
    return [v.string_value]


def observe(store: MetricStore, res: ResourceState, base: list[tuple[str, str]], gens: list[Generation]) -> None:
    """Add the generations of one (resource, scope, model, version) to the store's derived GenAI series,
    each sample with its span as exemplar. Caller holds the store's lock."""
    series: dict[tuple[tx.Instrument, tuple], list[Observation]] = {}
    for gen in gens:
        for inst, labels, value in observations(gen):
            per_unit = _NS if inst.unit == "s" else 1
            obs = (round(value * per_unit), gen.trace_id, gen.span_id, gen.end)
            series.setdefault((inst, labels), []).append(obs)
    for (inst, labels), obs in series.items():
        store.observe_derived(
            res, inst.prometheus_name, HISTOGRAM, inst.unit, inst.description, tuple(sorted((*base, *labels))), obs,
            inst.buckets, overflow=overflow.other, per_unit=_NS if inst.unit == "s" else 1,
        )  # fmt: skip
