"""The naming contract: OTel instruments translate to the seed's Prometheus names and labels."""

from __future__ import annotations

import bisect
import itertools

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import modeltel
from modeltel import taxonomy as tx
from modeltel.export.readers import prometheus_reader_class


def test_every_instrument_translates_to_its_documented_prometheus_name():
    from opentelemetry.exporter.prometheus import _mapping

    for inst in tx.INSTRUMENTS:
        unit = _mapping.map_unit(inst.unit)
        name = _mapping.sanitize_full_name(inst.otel_name)
        expected = f"{name}_{unit}" if unit else name
        assert expected == inst.prometheus_name, inst


def test_prometheus_exposition_has_seed_names_and_labels(make_captured):
    registry = CollectorRegistry()
    make_captured(
        metric_readers=(prometheus_reader_class()(registry=registry),), model_name="fraud", model_version="v1"
    )
    with modeltel.prediction():
        with modeltel.stage("inference"):
            pass
        modeltel.record_confidence(0.9)
    try:
        with modeltel.prediction():
            raise TimeoutError
    except TimeoutError:
        pass
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("otel_scope")))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert (
        "model_predictions_total",
        (("model_name", "fraud"), ("model_version", "v1"), ("status", "error")),
    ) in samples
    assert (
        samples[
            ("model_errors_total", (("error_type", "TimeoutError"), ("model_name", "fraud"), ("model_version", "v1")))
        ]
        == 1
    )
    assert any(n == "model_stage_latency_seconds_bucket" and ("stage", "inference") in lbl for n, lbl in samples)
    assert any(n == "model_prediction_latency_seconds_count" for n, _ in samples)
    assert any(n == "model_prediction_confidence_bucket" for n, _ in samples)


def test_buckets_tell_the_seed_thresholds_apart():
    thresholds = [0.020, 0.030, 0.050, 0.100, 0.200]
    for t in thresholds:
        assert t in tx.LATENCY_BUCKETS_SECONDS, f"{t} must be a boundary so '< {t}s' is an exact bucket read"
    buckets = [bisect.bisect_left(tx.LATENCY_BUCKETS_SECONDS, t * 1.05) for t in thresholds]
    assert len(set(buckets)) == len(thresholds)
    for a, b in itertools.pairwise(tx.LATENCY_BUCKETS_SECONDS):
        assert a < b


def test_every_latency_threshold_and_slo_boundary_is_a_bucket_boundary():
    for spec in tx.ALERTS:
        if spec.family in ("prediction_latency", "stage_latency"):
            assert spec.threshold in tx.LATENCY_BUCKETS_SECONDS, (spec.alert, spec.stage, spec.threshold)
    assert tx.SLO_LATENCY_THRESHOLD_SECONDS in tx.LATENCY_BUCKETS_SECONDS


def test_severity_is_ordered():
    # the seed's max() over strings picked "medium" over "critical"; ours orders by severity
    assert max([tx.Severity.WARNING, tx.Severity.CRITICAL, tx.Severity.OK]) is tx.Severity.CRITICAL


def test_one_threshold_per_alert_and_the_direction_its_rule_compares():
    seen = [(s.alert, s.stage) for s in tx.ALERTS]
    assert len(seen) == len(set(seen))
    lower = {s.alert for s in tx.ALERTS if s.direction is tx.Direction.LOWER_IS_WORSE}
    assert lower == {"LowThroughput", "AccuracyDegradation", "LowPredictionConfidence"}
    assert all(s.op == ("<" if s.alert in lower else ">") for s in tx.ALERTS)


def test_slo_error_budget():
    slo = next(s for s in tx.SLOS if s.name == "availability_slo")
    assert abs(slo.error_budget - 0.001) < 1e-12


# --------------------------------------------------------------------------------------------------
# Generative models (taxonomy.genai)
# --------------------------------------------------------------------------------------------------
# The semantic conventions' explicit bucket advice (gen-ai-metrics.md); the Python semconv package has none.
SEMCONV_BUCKETS = {
    "gen_ai.server.time_to_first_token": (
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ),
    "gen_ai.server.time_per_output_token": (
        0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
    ),
    "gen_ai.server.request.duration": (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ),
    "gen_ai.client.operation.duration": (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ),
    "gen_ai.client.token.usage": (
        1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
    ),
}  # fmt: skip
GENAI_PROMETHEUS_NAMES = {
    "gen_ai.server.time_to_first_token": "gen_ai_server_time_to_first_token_seconds",
    "gen_ai.server.time_per_output_token": "gen_ai_server_time_per_output_token_seconds",
    "gen_ai.server.request.duration": "gen_ai_server_request_duration_seconds",
    "gen_ai.client.token.usage": "gen_ai_client_token_usage",
    "gen_ai.client.operation.duration": "gen_ai_client_operation_duration_seconds",
}


class _RecordingMeter:
    """Stands in for an OTel meter: keeps what the semconv package's create_* helpers ask for."""

    def __init__(self) -> None:
        self.created: dict[str, dict] = {}

    def create_histogram(self, name: str, **kwargs) -> None:
        self.created[name] = {"kind": tx.InstrumentKind.HISTOGRAM, **kwargs}


def test_genai_instruments_are_the_semantic_conventions_own():
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

    meter = _RecordingMeter()
    for name in dir(gen_ai_metrics):
        if name.startswith("create_gen_ai_"):
            getattr(gen_ai_metrics, name)(meter)
    assert set(tx.GENAI_INSTRUMENTS_BY_OTEL_NAME) <= set(meter.created)
    for inst in tx.GENAI_INSTRUMENTS:
        spec = meter.created[inst.otel_name]
        assert (inst.kind, inst.unit, inst.description) == (spec["kind"], spec["unit"], spec["description"]), inst
    keys = (tx.ATTR_GEN_AI_OPERATION_NAME, tx.ATTR_GEN_AI_REQUEST_MODEL, tx.ATTR_GEN_AI_RESPONSE_MODEL)
    assert keys == (ga.GEN_AI_OPERATION_NAME, ga.GEN_AI_REQUEST_MODEL, ga.GEN_AI_RESPONSE_MODEL)
    assert tx.ATTR_GEN_AI_TOKEN_TYPE == ga.GEN_AI_TOKEN_TYPE
    assert ga.GenAiTokenTypeValues.INPUT.value == tx.GEN_AI_TOKEN_INPUT
    assert ga.GenAiTokenTypeValues.OUTPUT.value == tx.GEN_AI_TOKEN_OUTPUT
    assert tx.SPAN_ATTR_GEN_AI_RESPONSE_FINISH_REASONS == ga.GEN_AI_RESPONSE_FINISH_REASONS
    assert tx.SPAN_ATTR_GEN_AI_USAGE_INPUT_TOKENS == ga.GEN_AI_USAGE_INPUT_TOKENS
    assert tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS == ga.GEN_AI_USAGE_OUTPUT_TOKENS


def test_genai_prometheus_names_follow_the_same_translation():
    from opentelemetry.exporter.prometheus import _mapping

    assert {i.otel_name: i.prometheus_name for i in tx.GENAI_INSTRUMENTS} == GENAI_PROMETHEUS_NAMES
    for inst in tx.GENAI_INSTRUMENTS:
        unit = _mapping.map_unit(inst.unit)
        name = _mapping.sanitize_full_name(inst.otel_name)
        assert (f"{name}_{unit}" if unit else name) == inst.prometheus_name, inst
        # modeltel's model labels beside the gen_ai ones: a generative model sits next to a classifier
        assert inst.prometheus_labels[:2] == ("model_name", "model_version"), inst
        assert "gen_ai_operation_name" in inst.prometheus_labels, inst
    usage = tx.GEN_AI_CLIENT_TOKEN_USAGE.prometheus_labels
    assert "gen_ai_token_type" in usage
    assert all("gen_ai_token_type" not in i.prometheus_labels for i in tx.GENAI_INSTRUMENTS if i.unit == "s")


def test_genai_buckets_keep_the_semconv_advice_and_suit_each_quantity():
    for inst in tx.GENAI_INSTRUMENTS:
        assert set(SEMCONV_BUCKETS[inst.otel_name]) <= set(inst.buckets), inst.otel_name
        assert all(a < b for a, b in itertools.pairwise(inst.buckets)), inst.otel_name
    ttft, tpot = tx.TTFT_BUCKETS_SECONDS, tx.TPOT_BUCKETS_SECONDS
    assert ttft[0] <= 0.01 and ttft[-1] >= 30  # tens of ms to tens of s
    assert tpot[0] <= 0.001 and tpot[-1] <= 2.5  # milliseconds
    # 1k, 10k, 100k and 1M tokens land in different buckets
    usage = tx.TOKEN_USAGE_BUCKETS
    assert len({bisect.bisect_left(usage, n) for n in (1_000, 10_000, 100_000, 1_000_000)}) == 4


def test_genai_thresholds_and_the_ttft_slo_are_bucket_boundaries():
    of = {"ttft": tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, "tpot": tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN}
    specs = [s for s in tx.ALERTS if s.family in of]
    assert {s.alert for s in specs} == {
        "HighTimeToFirstToken", "CriticalTimeToFirstToken", "HighTimePerOutputToken", "CriticalTimePerOutputToken"
    }  # fmt: skip
    for spec in specs:
        assert spec.threshold in of[spec.family].buckets, spec
    slo = next(s for s in tx.SLOS if s.name == "ttft_slo")
    assert tx.SLO_TTFT_THRESHOLD_SECONDS in tx.TTFT_BUCKETS_SECONDS
    assert slo.good == 'gen_ai_server_time_to_first_token_seconds_bucket{le="1"}'
    assert slo.total == "gen_ai_server_time_to_first_token_seconds_count" and slo.objective == 0.95
    # the objective is missed before anyone is paged: SLO threshold < warning < critical
    (warning,) = tx.ALERTS_BY_NAME["HighTimeToFirstToken"]
    (critical,) = tx.ALERTS_BY_NAME["CriticalTimeToFirstToken"]
    assert tx.SLO_TTFT_THRESHOLD_SECONDS < warning.threshold < critical.threshold


def test_genai_check_names_are_distinct_and_among_the_checks_the_engine_grades():
    checks = tx.DEGRADATION_CHECKS
    assert len(set(checks)) == len(checks) and checks[-3:] == tx.GENAI_DEGRADATION_CHECKS
    assert tx.GENAI_DEGRADATION_CHECKS == ("ttft_shift", "tpot_shift", "output_length_drift")
