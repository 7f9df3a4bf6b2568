"""Generative models: the OpenTelemetry ``gen_ai.*`` metrics, named, united and bucketed for token streams.

A streamed generative model is judged by time to first token (TTFT), time per output token (TPOT, the
inter-token gap), tokens in and out, and the end-to-end duration, not by one "prediction latency". The
OpenTelemetry GenAI semantic conventions name exactly these; modeltel uses their names, units and
instrument kinds unchanged, so any ``gen_ai.*`` consumer reads modeltel's data, and translates them to
Prometheus like every other instrument (:mod:`.names`): dots become underscores, ``s`` becomes
``_seconds``, ``{token}`` is dropped::

    gen_ai.server.time_to_first_token   s        histogram  gen_ai_server_time_to_first_token_seconds
    gen_ai.server.time_per_output_token s        histogram  gen_ai_server_time_per_output_token_seconds
    gen_ai.server.request.duration      s        histogram  gen_ai_server_request_duration_seconds
    gen_ai.client.token.usage           {token}  histogram  gen_ai_client_token_usage
    gen_ai.client.operation.duration    s        histogram  gen_ai_client_operation_duration_seconds

Every one carries modeltel's ``model.name`` / ``model.version`` beside the ``gen_ai.*`` attributes, so a
generative model sits next to a classifier on every dashboard, alert and SLO (all of them aggregate by
``model_name, model_version``). ``gen_ai.provider.name`` (a hosted API's vendor) is left out: a model
modeltel watches is served by its own process, which ``service.name`` / ``job`` already name.

Bucket boundaries are the semantic conventions' advice, every one of them kept (a query on a semconv
``le`` still works), with boundaries added where a threshold of :mod:`.alerting` or an SLO of
:mod:`.quality` needs an exact bucket read, or where the advice stops short of what streams do; the
reasons are beside each tuple and in ``docs/metrics.md``. These instruments are not in
:data:`.names.INSTRUMENTS` (what every request/response prediction records): only generative requests
record them.
"""

from __future__ import annotations

from .names import ATTR_ERROR_TYPE, ATTR_MODEL_NAME, ATTR_MODEL_VERSION, Instrument, InstrumentKind

__all__ = [
    "ATTR_GEN_AI_OPERATION_NAME",
    "ATTR_GEN_AI_REQUEST_MODEL",
    "ATTR_GEN_AI_RESPONSE_MODEL",
    "ATTR_GEN_AI_TOKEN_TYPE",
    "ERROR_TYPE_CANCELLED",
    "FINISH_REASON_CANCELLED",
    "GENAI_INSTRUMENTS",
    "GENAI_INSTRUMENTS_BY_OTEL_NAME",
    "GENERATION_STAGES",
    "GEN_AI_CLIENT_OPERATION_DURATION",
    "GEN_AI_CLIENT_TOKEN_USAGE",
    "GEN_AI_DURATION_BUCKETS_SECONDS",
    "GEN_AI_OPERATION_CHAT",
    "GEN_AI_OPERATION_TEXT_COMPLETION",
    "GEN_AI_SERVER_REQUEST_DURATION",
    "GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN",
    "GEN_AI_SERVER_TIME_TO_FIRST_TOKEN",
    "GEN_AI_TOKEN_INPUT",
    "GEN_AI_TOKEN_OUTPUT",
    "SPAN_ATTR_GEN_AI_MAX_TOKEN_GAP",
    "SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS",
    "SPAN_ATTR_GEN_AI_TIME_PER_OUTPUT_TOKEN",
    "SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN",
    "SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS",
    "SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS",
    "SPAN_EVENT_GEN_AI_FIRST_TOKEN",
    "STAGE_DECODE",
    "STAGE_PREFILL",
    "STAGE_QUEUE",
    "STATUS_CANCELLED",
    "TOKEN_USAGE_BUCKETS",
    "TPOT_BUCKETS_SECONDS",
    "TTFT_BUCKETS_SECONDS",
]

# --------------------------------------------------------------------------------------------------
# Attribute keys (semantic conventions). Prometheus label in the comment.
# --------------------------------------------------------------------------------------------------
ATTR_GEN_AI_OPERATION_NAME = "gen_ai.operation.name"  # gen_ai_operation_name: chat | text_completion | ...
ATTR_GEN_AI_REQUEST_MODEL = "gen_ai.request.model"  # gen_ai_request_model: the model the request asked for
ATTR_GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"  # gen_ai_response_model: the model that answered
ATTR_GEN_AI_TOKEN_TYPE = "gen_ai.token.type"  # gen_ai_token_type: input | output (token usage only)
GEN_AI_OPERATION_CHAT = "chat"
GEN_AI_OPERATION_TEXT_COMPLETION = "text_completion"
GEN_AI_TOKEN_INPUT = "input"
GEN_AI_TOKEN_OUTPUT = "output"

# Span-only attributes (semantic conventions): never metric labels. finish_reasons is a string array, one
# per choice ("stop", "length", ...); the usage counts are the request's, which token usage aggregates.
SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
# modeltel's own span fields of a generation (seconds), so a trace and span-derived metrics read TTFT and
# TPOT without event arithmetic; the first-token event marks the moment on a waterfall.
SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN = "modeltel.gen_ai.time_to_first_token"
SPAN_ATTR_GEN_AI_TIME_PER_OUTPUT_TOKEN = "modeltel.gen_ai.time_per_output_token"
SPAN_ATTR_GEN_AI_MAX_TOKEN_GAP = "modeltel.gen_ai.max_token_gap"  # the longest stall between two tokens
SPAN_EVENT_GEN_AI_FIRST_TOKEN = "gen_ai.first_token"

# A generation whose consumer went away (client disconnect, early close, task cancelled) is neither a
# success nor an error: model_predictions_total counts it under status="cancelled" (so the error rate,
# status="error" over all, neither rises nor hides it), its finish reason is "cancelled", and the two
# duration histograms carry error.type="cancelled" (semconv: error.type is set when the request did not
# complete). TTFT and TPOT count successful responses only. Any prediction a cancellation ends (an
# exception that is not an Exception: hotpath.stage.is_cancellation) counts under status="cancelled" too.
STATUS_CANCELLED = "cancelled"
FINISH_REASON_CANCELLED = "cancelled"
ERROR_TYPE_CANCELLED = "cancelled"

# The stages of a generative pipeline, where the server can tell them apart: waiting for a slot, the
# forward pass over the prompt (ends at the first token), and the token-by-token loop. They share
# model_stage_latency_seconds with preprocess / inference / postprocess and always pass its label cap.
STAGE_QUEUE = "queue"
STAGE_PREFILL = "prefill"
STAGE_DECODE = "decode"
GENERATION_STAGES = (STAGE_QUEUE, STAGE_PREFILL, STAGE_DECODE)

# --------------------------------------------------------------------------------------------------
# Bucket boundaries.
# --------------------------------------------------------------------------------------------------
# TTFT (s): the semconv advice (1 ms .. 10 s), plus 2 s (HighTimeToFirstToken, so p95 at 2 s is a bucket
# edge, not an interpolation across 1 .. 2.5 s) and 15 / 20 / 30 / 60 s: long prompts and queued requests
# wait tens of seconds, which the advice would lump into +Inf. 1 s (the TTFT SLO) and 5 s (critical) are
# semconv boundaries already.
TTFT_BUCKETS_SECONDS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 2.5, 5.0, 7.5, 10.0,
    15.0, 20.0, 30.0, 60.0,
)  # fmt: skip
# TPOT (s): the semconv advice (10 ms .. 2.5 s), plus 1 / 2.5 / 5 / 7.5 ms (a GPU-served small model decodes
# a token in a few ms, all under the advice's first bucket), 15 / 20 ms (where most served models sit) and
# 250 ms (CriticalTimePerOutputToken). 100 ms (the warning) is a semconv boundary.
TPOT_BUCKETS_SECONDS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
    0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
# Request / operation duration (s): the semconv advice (doubling from 10 ms to 81.92 s), continued to
# 655.36 s: 4k output tokens at 50 ms a token take 200 s, past the advice's last boundary.
GEN_AI_DURATION_BUCKETS_SECONDS: tuple[float, ...] = tuple(0.01 * 2**i for i in range(17))
# Tokens per request, input or output: the semconv advice unchanged (powers of 4, 1 .. 67M): prompts of
# 100k+ tokens fall in distinct buckets (65536 .. 262144).
TOKEN_USAGE_BUCKETS: tuple[float, ...] = tuple(4**i for i in range(14))

_MODEL = (ATTR_MODEL_NAME, ATTR_MODEL_VERSION)
_GEN_AI = (ATTR_GEN_AI_OPERATION_NAME, ATTR_GEN_AI_REQUEST_MODEL, ATTR_GEN_AI_RESPONSE_MODEL)


def _histogram(otel_name: str, unit: str, description: str, attributes: tuple[str, ...], buckets) -> Instrument:
    suffix = "_seconds" if unit == "s" else ""  # the only units here: s and {token} (an annotation, dropped)
    return Instrument(
        otel_name=otel_name,
        prometheus_name=otel_name.replace(".", "_") + suffix,
        kind=InstrumentKind.HISTOGRAM,
        unit=unit,
        description=description,
        attributes=(*_MODEL, *attributes),
        buckets=buckets,
    )


# Descriptions are the semantic conventions' own.
GEN_AI_SERVER_TIME_TO_FIRST_TOKEN = _histogram(
    "gen_ai.server.time_to_first_token", "s", "Time to generate first token for successful responses.",
    _GEN_AI, TTFT_BUCKETS_SECONDS,
)  # fmt: skip
GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN = _histogram(
    "gen_ai.server.time_per_output_token", "s",
    "Time per output token generated after the first token for successful responses.",
    _GEN_AI, TPOT_BUCKETS_SECONDS,
)  # fmt: skip
GEN_AI_SERVER_REQUEST_DURATION = _histogram(
    "gen_ai.server.request.duration", "s",
    "Generative AI server request duration such as time-to-last byte or last output token.",
    (*_GEN_AI, ATTR_ERROR_TYPE), GEN_AI_DURATION_BUCKETS_SECONDS,
)  # fmt: skip
GEN_AI_CLIENT_TOKEN_USAGE = _histogram(
    "gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.",
    (*_GEN_AI, ATTR_GEN_AI_TOKEN_TYPE), TOKEN_USAGE_BUCKETS,
)  # fmt: skip
GEN_AI_CLIENT_OPERATION_DURATION = _histogram(
    "gen_ai.client.operation.duration", "s", "GenAI operation duration.",
    (*_GEN_AI, ATTR_ERROR_TYPE), GEN_AI_DURATION_BUCKETS_SECONDS,
)  # fmt: skip

GENAI_INSTRUMENTS: tuple[Instrument, ...] = (
    GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
    GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
    GEN_AI_SERVER_REQUEST_DURATION,
    GEN_AI_CLIENT_TOKEN_USAGE,
    GEN_AI_CLIENT_OPERATION_DURATION,
)
GENAI_INSTRUMENTS_BY_OTEL_NAME = {i.otel_name: i for i in GENAI_INSTRUMENTS}
