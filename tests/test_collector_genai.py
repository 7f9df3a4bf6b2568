"""Span-derived GenAI series: from a modeltel SDK's generation spans the collector derives the SDK's own
``gen_ai_*`` histograms, and from a plain OpenTelemetry app's (semantic-convention attributes and the
first-token event, no modeltel) it derives TTFT, TPOT and token usage; the hand-over to the app's own
series changes nothing that /metrics shows."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

import modeltel
from modeltel import taxonomy as tx
from modeltel.testing import Capture, capture
from modeltel_collector.facts import Prediction
from modeltel_collector.process.spanmetrics import process_traces
from modeltel_collector.store.metrics import MetricStore
from modeltel_collector.translate import label_name
from tests.collector_helpers import running_collector, scrape

GENAI = (*tx.GENAI_INSTRUMENTS, tx.PREDICTIONS)
SCOPE_LABELS = ("job", "instance", "otel_scope_name", "otel_scope_version")


@pytest.fixture
def tel() -> Iterator[Capture]:
    with capture(model_name="llm", model_version="2") as c:
        yield c


def _tokens(gaps: list[float], fail_at: int | None = None) -> Iterator[str]:
    for i, gap in enumerate(gaps):
        time.sleep(gap)
        if i == fail_at:
            raise ValueError("decoder broke")
        yield f"t{i}"


def _generations() -> None:
    """Every outcome the SDK tells apart: streams, a chat with reported usage and a response model, one
    token, a failure mid-stream, a consumer that left."""
    for _ in range(3):
        list(modeltel.stream(_tokens([0.02, 0.005, 0.005, 0.005]), operation="chat", request_model="llm-7b"))
    with modeltel.generation(operation="chat", request_model="llm-7b", response_model="llm-7b-0613") as g:
        g.usage(input_tokens=37)
        for _ in range(5):
            time.sleep(0.003)
            g.token()
        g.usage(output_tokens=6)
        g.finish("stop")
    list(modeltel.stream(_tokens([0.01])))
    with pytest.raises(ValueError):
        list(modeltel.stream(_tokens([0.01, 0.01, 0.01], fail_at=2), operation="chat", request_model="llm-7b"))
    it = modeltel.stream(_tokens([0.01] * 10), operation="chat", request_model="llm-7b")
    next(it), next(it)
    it.close()


def _sdk_series(tel: Capture) -> dict[tuple, tuple]:
    """(family, labels without scope) -> (count or value, bucket counts) of the SDK's own points."""
    out = {}
    for inst in GENAI:
        for p in tel.points(inst.otel_name):
            labels = tuple(sorted((label_name(k), str(v)) for k, v in p.attributes.items()))
            if hasattr(p, "bucket_counts"):
                out[inst.prometheus_name, labels] = (p.count, tuple(p.bucket_counts))
            elif p.value:
                out[inst.prometheus_name, labels] = (p.value, ())
    return out


def _derived_series(store: MetricStore) -> dict[tuple, tuple]:
    out = {}
    for inst in GENAI:
        fam = store.families.get(inst.prometheus_name)
        for labels, s in fam.series.items() if fam else ():
            key = (inst.prometheus_name, tuple((k, v) for k, v in labels if k not in SCOPE_LABELS))
            out[key] = (s.count, tuple(s.counts)) if hasattr(s, "counts") else (s.value, ())
    return out


def _without_durations(series: dict[tuple, tuple]) -> dict[tuple, tuple]:
    """The request duration's buckets: the SDK times the generation on perf_counter, the span on the wall
    clock, so a value on a bucket edge may fall either side; its counts must agree."""
    durations = (tx.GEN_AI_SERVER_REQUEST_DURATION.prometheus_name, tx.GEN_AI_CLIENT_OPERATION_DURATION.prometheus_name,
                 tx.PREDICTIONS.prometheus_name)  # fmt: skip
    return {k: (v[0], ()) if k[0] in durations else v for k, v in series.items()}


def test_from_an_sdk_apps_generation_spans_the_collector_derives_its_genai_series(tel: Capture) -> None:
    _generations()
    store, facts = MetricStore(), []
    process_traces(encode_spans(tel.spans()), store, now=time.time(), facts=facts)
    sdk, derived = _sdk_series(tel), _derived_series(store)
    assert tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.prometheus_name in {k[0] for k in sdk}
    assert ("error_type", "ValueError") in next(k[1] for k in sdk if ("error_type", "ValueError") in k[1])
    assert _without_durations(derived) == _without_durations(sdk)
    statuses = {dict(k[1])["status"]: v[0] for k, v in derived.items() if k[0] == tx.PREDICTIONS.prometheus_name}
    assert statuses == {"success": 5, "error": 1, "cancelled": 1}
    # the detectors' facts carry a generation's TTFT, TPOT and output tokens, as the span says them
    by_span = {s.context.span_id.to_bytes(8, "big"): s for s in tel.spans()}
    chat = next(s for s in by_span.values() if s.attributes.get(tx.ATTR_GEN_AI_RESPONSE_MODEL) == "llm-7b-0613")
    fact = next(f for f in facts if isinstance(f, Prediction) and f.output_tokens == 6)
    assert fact.ttft_s == chat.attributes[tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN]
    assert fact.tpot_s == chat.attributes[tx.SPAN_ATTR_GEN_AI_TIME_PER_OUTPUT_TOKEN]


def test_client_calls_inside_a_prediction_derive_their_client_series_and_no_prediction(tel: Capture) -> None:
    with modeltel.prediction("app", "1"):  # a request that calls an upstream model twice
        for _ in range(2):
            list(modeltel.stream(_tokens([0.005, 0.005]), operation="chat", request_model="gpt-x", client=True))
    list(modeltel.stream(_tokens([0.005]), operation="chat", request_model="gpt-x", client=True))  # on its own
    store = MetricStore()
    process_traces(encode_spans(tel.spans()), store, now=time.time())
    sdk, derived = _sdk_series(tel), _derived_series(store)
    assert _without_durations(derived) == _without_durations(sdk)
    predictions = {dict(k[1])["model_name"]: v[0] for k, v in derived.items() if k[0] == tx.PREDICTIONS.prometheus_name}
    assert predictions == {"app": 1, "llm": 1}  # the request once; a client call on its own is the app's prediction
    client = {dict(k[1])["model_name"]: v[0] for k, v in derived.items()
              if k[0] == tx.GEN_AI_CLIENT_OPERATION_DURATION.prometheus_name}  # fmt: skip
    assert client == {"app": 2, "llm": 1}
    assert tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.prometheus_name not in {k[0] for k in derived}  # CLIENT spans


def test_derived_genai_samples_carry_their_span_as_exemplar(tel: Capture) -> None:
    list(modeltel.stream(_tokens([0.02, 0.005, 0.005]), operation="chat", request_model="llm-7b"))
    (span,) = tel.spans()
    store = MetricStore()
    process_traces(encode_spans(tel.spans()), store, now=time.time())
    ttft = span.attributes[tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN]
    for inst, value in ((tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, ttft), (tx.GEN_AI_CLIENT_TOKEN_USAGE, 3.0)):
        (series,) = store.families[inst.prometheus_name].series.values()
        (exemplar,) = series.exemplars.values()
        assert exemplar[:3] == (format(span.context.trace_id, "032x"), format(span.context.span_id, "016x"),
                                pytest.approx(value))  # fmt: skip


PLAIN = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, tx.ATTR_MODEL_NAME: "llama", tx.ATTR_MODEL_VERSION: "3",
         tx.ATTR_GEN_AI_OPERATION_NAME: "chat", tx.ATTR_GEN_AI_REQUEST_MODEL: "llama-3-8b",
         tx.SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS: 12}  # fmt: skip


def _plain_app(c, spans: list[dict]) -> None:
    """An app with plain OpenTelemetry (no modeltel): generation spans with the semantic conventions'
    attributes and a first-token event at a chosen offset; times in ns from a fixed start."""
    tp = TracerProvider(resource=Resource.create({"service.name": "vllm-like", "service.instance.id": "w1"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=c.urls["otlp_http"] + "/v1/traces")))
    tracer = tp.get_tracer("my.llm.server", "1.0")
    t0 = time.time_ns()
    for s in spans:
        attrs = {**PLAIN, tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS: s["out"]}
        kind = s.get("kind", SpanKind.SERVER)
        span = tracer.start_span("chat llama-3-8b", kind=kind, attributes=attrs, start_time=t0)
        if "first" in s:
            span.add_event(tx.SPAN_EVENT_GEN_AI_FIRST_TOKEN, timestamp=t0 + s["first"])
        span.end(end_time=t0 + s["end"])
    tp.shutdown()


def _hist(c, inst: tx.Instrument, **labels: str) -> tuple[float, float, dict[float, float]]:
    """(count, sum, cumulative bucket counts by le) of the one scraped series of ``inst`` with ``labels``."""
    fam = scrape(c)[inst.prometheus_name]["samples"]
    name = inst.prometheus_name
    picked = {(n, lb): v for (n, lb), v in fam.items() if all(dict(lb).get(k) == v2 for k, v2 in labels.items())}
    count = sum(v for (n, _), v in picked.items() if n == name + "_count")
    total = sum(v for (n, _), v in picked.items() if n == name + "_sum")
    buckets = {float(dict(lb)["le"]): v for (n, lb), v in picked.items() if n == name + "_bucket"}
    return count, total, buckets


MS = 1_000_000


def test_a_trace_only_app_gets_ttft_from_the_first_token_event_and_tpot_from_the_span_end() -> None:
    with running_collector(otlp_grpc="") as c:
        _plain_app(c, [
            {"first": 80 * MS, "end": 480 * MS, "out": 21},  # TPOT (480 - 80) / 20 = 20 ms
            {"first": 300 * MS, "end": 1300 * MS, "out": 11},  # 100 ms
            {"first": 50 * MS, "end": 60 * MS, "out": 1},  # one token: a TTFT, no TPOT
            {"end": 40 * MS, "out": 0},  # nothing came out: no TTFT, no tokens out
            {"first": 5 * MS, "end": 95 * MS, "out": 10, "kind": SpanKind.CLIENT},  # the client's view
        ])  # fmt: skip
        base = {"model_name": "llama", "gen_ai_operation_name": "chat", "gen_ai_request_model": "llama-3-8b",
                "gen_ai_response_model": "llama-3-8b", "otel_scope_name": "my.llm.server"}  # fmt: skip
        count, total, buckets = _hist(c, tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, **base)
        assert (count, total) == (3, pytest.approx(0.43))
        assert (buckets[0.08], buckets[0.1], buckets[0.25], buckets[0.5]) == (2, 2, 2, 3)
        count, total, buckets = _hist(c, tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, **base)
        assert (count, total) == (2, pytest.approx(0.12))
        assert (buckets[0.015], buckets[0.02], buckets[0.075], buckets[0.1]) == (0, 1, 1, 2)
        out = _hist(c, tx.GEN_AI_CLIENT_TOKEN_USAGE, **base, gen_ai_token_type="output")
        assert out[:2] == (4, 43)  # 21 + 11 + 1 + 10: the span that produced nothing adds no output sample
        assert _hist(c, tx.GEN_AI_CLIENT_TOKEN_USAGE, **base, gen_ai_token_type="input")[:2] == (5, 60)
        assert _hist(c, tx.GEN_AI_SERVER_REQUEST_DURATION, **base)[:2] == (4, pytest.approx(1.88))
        assert _hist(c, tx.GEN_AI_CLIENT_OPERATION_DURATION, **base)[:2] == (1, pytest.approx(0.095))


def test_across_the_hand_over_the_genai_series_show_what_the_sdk_counted() -> None:
    # The app sends traces first (the collector derives), then its own GenAI metrics: every exposed
    # gen_ai series keeps its labels and its count, and spans derive no more of them.
    with running_collector(otlp_grpc="") as c, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.urls["otlp_http"])
        mp.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        mp.setenv("OTEL_SERVICE_NAME", "llm-svc")
        mp.setenv("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
        pipeline = modeltel.init(set_global=False, gpu_metrics=False, host_metrics=False,
                                 model_name="llm", model_version="2")  # fmt: skip
        try:
            _generations()
            assert pipeline.tracer_provider.force_flush()
            before = _genai_counts(c)
            assert len(before) >= 6
            assert pipeline.meter_provider.force_flush()
            assert _genai_counts(c) == before
            list(modeltel.stream(_tokens([0.01, 0.01]), operation="chat", request_model="llm-7b"))
            assert pipeline.tracer_provider.force_flush() and pipeline.meter_provider.force_flush()
            after = _genai_counts(c)
        finally:
            modeltel.shutdown()
        ttft = next(k for k in before if k[0] == tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.prometheus_name + "_count")
        assert after[ttft] == before[ttft] + 1  # the app's own series carries on, counted once


def _genai_counts(c) -> dict[tuple, float]:
    scraped = scrape(c)
    out = {}
    for inst in tx.GENAI_INSTRUMENTS:
        for (name, labels), v in scraped.get(inst.prometheus_name, {"samples": {}})["samples"].items():
            if name.endswith("_count") and dict(labels).get("job") == "llm-svc":
                out[name, labels] = v
    return out
