"""Settings: env parsing, one clear warning per bad value with the fallback used, explicit beats env."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

import modeltel
from modeltel import config
from modeltel import taxonomy as tx
from modeltel.testing import OtlpSink, capture


def test_defaults_without_environment():
    s = config.load({})
    assert s.service_name == "modeltel-app"
    assert s.model_name == tx.UNKNOWN_VALUE and s.model_version == tx.UNKNOWN_VALUE
    assert s.sampler == "parentbased_always_on" and s.exemplar_filter == "trace_based"
    assert s.gpu_metrics and s.host_metrics and not s.disabled
    assert s.prometheus_port is None
    assert s.fast_path and s.latency_buckets == tx.LATENCY_BUCKETS_SECONDS


def test_good_values_are_used():
    s = config.load(
        {
            "MODELTEL_MODEL_NAME": "fraud",
            "MODELTEL_MODEL_VERSION": "v2",
            "MODELTEL_GPU_METRICS": "off",
            "MODELTEL_HOST_METRICS": "0",
            "MODELTEL_PROMETHEUS_PORT": "9500",
            "MODELTEL_DISABLED": "no",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
            "MODELTEL_LATENCY_BUCKETS": "0.01,0.05,0.1",
            "MODELTEL_HISTOGRAM": "exponential",
        }
    )
    assert (s.model_name, s.model_version, s.service_name) == ("fraud", "v2", "fraud")
    assert not s.gpu_metrics and not s.host_metrics and not s.disabled
    assert s.prometheus_port == 9500
    assert s.traces_protocol == "grpc" and s.metrics_protocol == "http/protobuf"
    assert s.sampler == "parentbased_traceidratio" and s.sampler_arg == 0.25
    assert s.latency_buckets == (0.01, 0.05, 0.1)
    assert not s.fast_path


def test_service_name_and_model_from_standard_variables():
    s = config.load({"OTEL_SERVICE_NAME": "svc", "OTEL_RESOURCE_ATTRIBUTES": "model.name=m,model.version=3"})
    assert (s.service_name, s.model_name, s.model_version) == ("svc", "m", "3")


@pytest.mark.parametrize(
    ("var", "value", "field", "fallback"),
    [
        ("MODELTEL_GPU_METRICS", "maybe", "gpu_metrics", True),
        ("MODELTEL_PROMETHEUS_PORT", "http", "prometheus_port", None),
        ("MODELTEL_PROMETHEUS_PORT", "70000", "prometheus_port", None),
        ("OTEL_TRACES_SAMPLER", "sometimes", "sampler", "parentbased_always_on"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "traces_protocol", "http/protobuf"),
        ("MODELTEL_LATENCY_BUCKETS", "0.1,0.05", "latency_buckets", tx.LATENCY_BUCKETS_SECONDS),
        ("MODELTEL_LATENCY_BUCKETS", "a,b", "latency_buckets", tx.LATENCY_BUCKETS_SECONDS),
        ("MODELTEL_MAX_STAGES", "-3", "max_stages", tx.DEFAULT_MAX_STAGES),
        ("OTEL_METRIC_EXPORT_INTERVAL", "soon", "metric_export_interval_ms", 10_000),
        ("MODELTEL_HISTOGRAM", "log", "histogram", "explicit"),
    ],
)
def test_bad_value_warns_once_naming_variable_value_and_fallback(caplog, var, value, field, fallback):
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        s = config.load({var: value})
    assert getattr(s, field) == fallback
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if var in m]) == 1
    message = next(m for m in messages if var in m)
    assert repr(value) in message and "instead" in message


def test_bad_sampler_ratio_falls_back_to_one(caplog):
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        s = config.load({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"})
    assert s.sampler_arg == 1.0
    assert "OTEL_TRACES_SAMPLER_ARG" in caplog.text


def test_explicit_arguments_beat_environment():
    env = {"MODELTEL_MODEL_NAME": "from-env", "MODELTEL_GPU_METRICS": "true"}
    s = config.load(env, model_name="from-code", gpu_metrics=False)
    assert s.model_name == "from-code" and s.service_name == "from-code" and s.gpu_metrics is False
    assert config.load(env, model_name=None).model_name == "from-env"


def test_unknown_setting_warns_with_the_closest_name_and_is_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        s = config.load({}, modle_name="typo")
    assert s == config.load({})
    (message,) = [r.getMessage() for r in caplog.records]
    assert "modle_name" in message and "'model_name'" in message


@pytest.mark.parametrize(
    ("typo", "closest"),
    [
        ("MODELTEL_MODEL", "MODELTEL_MODEL_NAME"),
        ("MODELTEL_GPU_METRIC", "MODELTEL_GPU_METRICS"),
        ("MODELTEL_MODELVERSION", "MODELTEL_MODEL_VERSION"),
    ],
)
def test_an_unknown_modeltel_variable_warns_once_with_the_closest_name(caplog, typo, closest):
    env = {typo: "iris", "MODELTEL_COLLECTOR_LISTEN": "127.0.0.1:0", "MODELTEL_AUTH_TOKEN": "t"}  # others' own
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        s = config.load(env)
        config.load(env)  # init() loads again: still one warning
    assert s == config.load({})
    (message,) = [r.getMessage() for r in caplog.records]
    assert typo in message and f"did you mean {closest}?" in message


def test_an_unknown_variable_far_from_any_says_where_the_valid_ones_are(caplog):
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        config.load({"MODELTEL_ZZZ_QQQ": "1"})
    (message,) = [r.getMessage() for r in caplog.records]
    assert "MODELTEL_ZZZ_QQQ" in message and "Configuration table" in message


def test_every_setting_has_one_rule_for_both_sources():
    assert set(config.RULES) == {f.name for f in dataclasses.fields(config.Settings)}


@pytest.mark.parametrize(
    ("field", "value", "fallback"),
    [
        ("sampler", "bogus", "parentbased_always_on"),
        ("sampler_arg", 2.0, 1.0),
        ("prometheus_port", 70000, None),
        ("prometheus_port", "http", None),
        ("prometheus_port", 80.5, None),
        ("gpu_metrics", "maybe", True),
        ("metrics_temporality", "sideways", "cumulative"),
        ("metrics_exporter", "zipkin", "otlp"),
        ("histogram", 3, "explicit"),
        ("latency_buckets", (0.5, 0.1), tx.LATENCY_BUCKETS_SECONDS),
        ("batch_size_buckets", "1,x", tx.BATCH_SIZE_BUCKETS),
        ("max_stages", 0, tx.DEFAULT_MAX_STAGES),
        ("max_error_types", float("inf"), tx.DEFAULT_MAX_ERROR_TYPES),
        ("service_name", "", "modeltel-app"),
    ],
)
def test_bad_keyword_warns_once_and_falls_back_like_the_environment(caplog, field, value, fallback):
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        s = config.load({}, **{field: value})
    assert getattr(s, field) == fallback
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert f"init({field})={value!r}" in messages[0] and "instead" in messages[0]


def test_bad_keyword_falls_back_to_the_environment_value(caplog):
    with caplog.at_level(logging.WARNING, logger="modeltel"):
        s = config.load({"OTEL_TRACES_SAMPLER": "always_off"}, sampler="sometimes")
    assert s.sampler == "always_off"
    assert "'always_off' instead" in caplog.text


def test_good_keywords_are_converted_like_environment_strings():
    s = config.load({}, sampler="TraceIdRatio", prometheus_port="9500", gpu_metrics="off", latency_buckets=[0.1, 1])
    assert (s.sampler, s.prometheus_port, s.gpu_metrics, s.latency_buckets) == ("traceidratio", 9500, False, (0.1, 1.0))


def test_init_with_a_bad_sampler_builds_the_pipeline(caplog):
    with caplog.at_level(logging.WARNING, logger="modeltel"), capture(sampler="bogus") as c:
        assert c.pipeline.settings.sampler == "parentbased_always_on"
        assert c.pipeline.tracer_provider.sampler.get_description().startswith("ParentBased{root:AlwaysOnSampler")
    assert "init(sampler)='bogus'" in caplog.text


@pytest.mark.parametrize(("temporality", "counter"), [("delta", "DELTA"), ("cumulative", "CUMULATIVE")])
def test_metrics_temporality_reaches_the_otlp_exporter(monkeypatch, temporality, counter):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", raising=False)
    with OtlpSink() as sink:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
        with capture(metrics_exporter="otlp", metrics_temporality=temporality) as c:
            with modeltel.prediction(), modeltel.stage("inference"):
                pass
            c.pipeline.force_flush()
            assert sink.wait_for(lambda s: list(s.metric_points(tx.PREDICTIONS.otel_name)))
    (_, metric, _), *_ = sink.metric_points(tx.PREDICTIONS.otel_name)
    (_, histogram, _), *_ = sink.metric_points(tx.STAGE_LATENCY.otel_name)
    expected = getattr(AggregationTemporality, f"AGGREGATION_TEMPORALITY_{counter}")
    assert metric.sum.aggregation_temporality == expected
    assert histogram.histogram.aggregation_temporality == expected
