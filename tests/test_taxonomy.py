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
