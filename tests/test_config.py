"""Settings: env parsing, one clear warning per bad value with the fallback used, explicit beats env."""

from __future__ import annotations

import logging

import pytest

from modeltel import config
from modeltel import taxonomy as tx


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


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError, match="modle_name"):
        config.load({}, modle_name="typo")
