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


def test_every_threshold_and_slo_boundary_is_a_bucket_boundary():
    for d in tx.CORE_METRICS.values():
        if d.instrument in (tx.PREDICTION_LATENCY, tx.STAGE_LATENCY):
            for v in (d.threshold_warning, d.threshold_critical, d.slo_target):
                assert v in tx.LATENCY_BUCKETS_SECONDS, (d.name, v)
    assert tx.SLO_LATENCY_THRESHOLD_SECONDS in tx.LATENCY_BUCKETS_SECONDS


def test_severity_is_ordered_and_direction_aware():
    latency = tx.CORE_METRICS["prediction_latency"]
    accuracy = tx.CORE_METRICS["online_accuracy"]
    assert latency.severity(0.05) is tx.Severity.OK
    assert latency.severity(0.15) is tx.Severity.WARNING
    assert latency.severity(0.25) is tx.Severity.CRITICAL
    assert accuracy.severity(0.95) is tx.Severity.OK
    assert accuracy.severity(0.83) is tx.Severity.WARNING
    assert accuracy.severity(0.5) is tx.Severity.CRITICAL
    # the seed's max() over strings picked "medium" over "critical"; ours orders by severity
    assert max([tx.Severity.WARNING, tx.Severity.CRITICAL, tx.Severity.OK]) is tx.Severity.CRITICAL


def test_slo_error_budget():
    slo = next(s for s in tx.SLOS if s.name == "availability_slo")
    assert abs(slo.error_budget - 0.001) < 1e-12
