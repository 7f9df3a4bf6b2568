"""Zero-code activation: a script run under opentelemetry-instrument (or modeltel run), configured by
environment variables alone, delivers its spans and metrics over real OTLP/HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modeltel import taxonomy as tx
from modeltel.testing import OtlpSink, attributes

BIN = Path(sys.executable).parent

SCRIPT = textwrap.dedent(
    """
    import modeltel

    @modeltel.monitor_prediction()
    def predict(x):
        with modeltel.stage("preprocess"):
            x = x * 2
        with modeltel.stage("inference"):
            if x < 0:
                raise ValueError("negative")
        with modeltel.stage("postprocess"):
            return {"confidence": 0.75}

    for i in range(5):
        predict(i)
    try:
        predict(-1)
    except ValueError:
        pass
    """
)


def _run(tmp_path: Path, sink: OtlpSink, launcher: list[str], extra_env: dict[str, str] | None = None) -> None:
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MODELTEL_"))}  # only what the test sets
    env.update(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_SERVICE_NAME": "zero-code-app",
            "MODELTEL_MODEL_NAME": "churn",
            "MODELTEL_MODEL_VERSION": "4.2",
            "MODELTEL_GPU_METRICS": "false",
            "MODELTEL_HOST_METRICS": "false",
            **(extra_env or {}),
        }
    )
    proc = subprocess.run([*launcher, sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _check(sink: OtlpSink) -> None:
    assert sink.wait_for(lambda s: s.traces and s.metrics, timeout=10)
    spans = list(sink.spans())
    names = [span.name for _, span in spans]
    assert names.count("predict") == 6 and names.count("inference") == 6
    resource = spans[0][0]
    assert resource["service.name"] == "zero-code-app"
    assert resource["model.name"] == "churn" and resource["model.version"] == "4.2"
    assert resource["telemetry.distro.name"] == "modeltel"
    predicts = {span.span_id: span for _, span in spans if span.name == "predict"}
    for _, span in spans:
        if span.name in tx.CANONICAL_STAGES:
            assert span.parent_span_id in predicts
            assert attributes(span.attributes)[tx.SPAN_ATTR_STAGE] == span.name
    errors = [span for span in predicts.values() if span.status.code == span.status.STATUS_CODE_ERROR]
    assert len(errors) == 1

    counts = {attributes(p.attributes)["status"]: p.as_int for _, _, p in sink.metric_points(tx.PREDICTIONS.otel_name)}
    assert counts == {"success": 5, "error": 1}
    stage_points = {attributes(p.attributes)["stage"]: p for _, _, p in sink.metric_points(tx.STAGE_LATENCY.otel_name)}
    assert stage_points["inference"].count == 6 and stage_points["postprocess"].count == 5
    assert attributes(stage_points["inference"].attributes)["model.name"] == "churn"
    exemplar_spans = {e.span_id for e in stage_points["inference"].exemplars}
    assert exemplar_spans and exemplar_spans <= {span.span_id for _, span in spans}
    (errors_point,) = [p for _, _, p in sink.metric_points(tx.ERRORS.otel_name)]
    assert attributes(errors_point.attributes)["error.type"] == "ValueError" and errors_point.as_int == 1


def test_opentelemetry_instrument_with_env_vars_only(tmp_path):
    with OtlpSink() as sink:
        _run(tmp_path, sink, [str(BIN / "opentelemetry-instrument")])
        _check(sink)


def test_modeltel_run_with_env_vars_only(tmp_path):
    with OtlpSink() as sink:
        _run(tmp_path, sink, [str(BIN / "modeltel"), "run", "--"])
        _check(sink)


def test_otlp_over_grpc(tmp_path):
    with OtlpSink(grpc=True) as sink:
        extra = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.grpc_endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        _run(tmp_path, sink, [str(BIN / "modeltel"), "run", "--"], extra)
        _check(sink)


@pytest.mark.parametrize("var", ["OTEL_TRACES_SAMPLER", "MODELTEL_PROMETHEUS_PORT"])
def test_bad_configuration_never_stops_the_app(tmp_path, var):
    with OtlpSink() as sink:
        _run(tmp_path, sink, [str(BIN / "modeltel"), "run", "--"], {var: "nonsense"})
        _check(sink)
