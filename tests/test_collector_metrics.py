"""Metrics path: OTel SDK apps over OTLP/HTTP and gRPC -> merged /metrics, checked value by value."""

from __future__ import annotations

import json
import math

import pytest
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

from modeltel import taxonomy as tx
from modeltel_collector.serve.exposition import wants_openmetrics
from modeltel_collector.translate import label_name, metric_family_name
from tests.collector_helpers import (
    http_get,
    http_post,
    meter_provider,
    metric_exporter,
    running_collector,
    sample,
    scrape,
)

BUCKETS = tx.LATENCY_BUCKETS_SECONDS


@pytest.mark.parametrize("instrument", tx.INSTRUMENTS, ids=lambda i: i.otel_name)
def test_translation_matches_taxonomy(instrument: tx.Instrument) -> None:
    is_gauge = instrument.kind is tx.InstrumentKind.GAUGE
    assert metric_family_name(instrument.otel_name, instrument.unit, is_gauge) == instrument.prometheus_name
    assert tuple(label_name(a) for a in instrument.attributes) == instrument.prometheus_labels


def test_translation_rules() -> None:
    assert metric_family_name("http.server.duration", "ms") == "http_server_duration_milliseconds"
    assert metric_family_name("cpu.util", "1", is_gauge=True) == "cpu_util_ratio"
    assert metric_family_name("requests.total", "1") == "requests"
    assert metric_family_name("net.io", "By/s") == "net_io_bytes_per_second"
    assert metric_family_name("2xx", "") == "_2xx"
    assert label_name("http.status-code") == "http_status_code"
    assert label_name("9lives") == "key_9lives"
    assert label_name("__meta") == "key__meta"


def test_content_negotiation() -> None:
    assert wants_openmetrics("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
    assert not wants_openmetrics("text/plain")
    assert not wants_openmetrics("")
    assert not wants_openmetrics("application/openmetrics-text;q=0.2,text/plain")


def _record_model_metrics(mp, values: list[float], statuses: list[str]) -> None:
    meter = mp.get_meter(tx.METER_NAME, "0.1.0")
    hist = meter.create_histogram(tx.PREDICTION_LATENCY.otel_name, unit="s",
                                  explicit_bucket_boundaries_advisory=list(BUCKETS))  # fmt: skip
    counter = meter.create_counter(tx.PREDICTIONS.otel_name, unit=tx.PREDICTIONS.unit)
    attrs = {tx.ATTR_MODEL_NAME: "iris", tx.ATTR_MODEL_VERSION: "v1"}
    for v in values:
        hist.record(v, attrs)
    for s in statuses:
        counter.add(1, {**attrs, tx.ATTR_STATUS: s})


def _expected_buckets(values: list[float]) -> dict[str, int]:
    out = {f"{b:g}": sum(1 for v in values if v <= b) for b in BUCKETS}
    out["+Inf"] = len(values)
    return out


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("delta", [False, True], ids=["cumulative", "delta"])
def test_counters_and_histograms_value_by_value(protocol: str, delta: bool) -> None:
    with running_collector() as c:
        mp = meter_provider(metric_exporter(c, protocol, delta))
        first, second = [0.004, 0.02, 0.02, 0.3], [0.07, 12.0]
        _record_model_metrics(mp, first, ["success", "success", "error"])
        assert mp.force_flush()
        _record_model_metrics(mp, second, ["success"])
        assert mp.force_flush()
        values = first + second
        for om in (False, True):
            fams = scrape(c, openmetrics=om)
            fam = "model_prediction_latency_seconds"
            assert fams[fam]["type"] == "histogram"
            lbl = {"job": "svc", "instance": "i1", "model_name": "iris", "model_version": "v1"}
            for le, n in _expected_buckets(values).items():
                assert sample(fams, fam, fam + "_bucket", le=le, **lbl) == n, le
            assert sample(fams, fam, fam + "_count", **lbl) == len(values)
            assert math.isclose(sample(fams, fam, fam + "_sum", **lbl), sum(values))
            pred = "model_predictions"
            assert fams[pred]["type"] == "counter"
            assert sample(fams, pred, "model_predictions_total", status="success", **lbl) == 3
            assert sample(fams, pred, "model_predictions_total", status="error", **lbl) == 1
            info = "target" if om else "target_info"
            assert sample(fams, info, "target_info", job="svc", instance="i1") == 1
        mp.shutdown()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_gauges_updown_and_exponential_histograms(protocol: str) -> None:
    view = View(instrument_name="payload.size", aggregation=ExponentialBucketHistogramAggregation(max_size=160))
    with running_collector() as c:
        mp = meter_provider(metric_exporter(c, protocol, delta=True), views=[view])
        meter = mp.get_meter("app")
        meter.create_gauge("model.online_accuracy", unit="{fraction}").set(0.93, {"model.name": "iris"})
        queue = meter.create_up_down_counter("queue.depth", unit="{request}")
        queue.add(5)
        queue.add(-2)
        sizes = [1.0, 3.0, 3.5, 100.0, 1000.0, 0.0]
        hist = meter.create_histogram("payload.size", unit="By")
        for s in sizes[:3]:
            hist.record(s)
        assert mp.force_flush()
        for s in sizes[3:]:
            hist.record(s)
        assert mp.force_flush()
        fams = scrape(c)
        assert sample(fams, "model_online_accuracy", "model_online_accuracy", model_name="iris") == 0.93
        assert fams["queue_depth"]["type"] == "gauge"
        assert sample(fams, "queue_depth", "queue_depth") == 3
        fam = "payload_size_bytes"
        assert sample(fams, fam, fam + "_count") == len(sizes)
        assert sample(fams, fam, fam + "_sum") == sum(sizes)
        buckets = sorted(
            (float(dict(lb)["le"]), v) for (n, lb), v in fams[fam]["samples"].items() if n == fam + "_bucket"
        )
        assert buckets[-1] == (math.inf, len(sizes))
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "buckets must be cumulative"
        # every observation falls at or below the first boundary counting it (exponential bucket bounds)
        for s in sizes:
            first = next(le for le, v in buckets if v >= sum(1 for x in sizes if x <= s))
            assert s <= first
        mp.shutdown()


def test_workers_stay_distinct_and_sum() -> None:
    with running_collector() as c:
        providers = [
            meter_provider(metric_exporter(c, p), instance=f"worker-{i}") for i, p in enumerate(["http", "grpc"])
        ]
        for n, mp in enumerate(providers, start=1):
            mp.get_meter("app").create_counter("jobs", unit="{job}").add(10 * n)
            assert mp.force_flush()
        fams = scrape(c)
        per_worker = {dict(lb)["instance"]: v for (_, lb), v in fams["jobs"]["samples"].items()}
        assert per_worker == {"worker-0": 10, "worker-1": 20}
        assert sum(per_worker.values()) == 30
        for mp in providers:
            mp.shutdown()


def test_series_of_silent_source_expire() -> None:
    with running_collector(staleness_s=0.2) as c:
        mp = meter_provider(metric_exporter(c, "http"), instance="gone")
        mp.get_meter("app").create_counter("jobs").add(1)
        assert mp.force_flush()
        assert "jobs" in scrape(c)
        mp.shutdown()
        import time

        time.sleep(0.4)
        c.metrics.expire()
        fams = scrape(c)
        assert "jobs" not in fams
        assert "target_info" not in fams


def test_otlp_json_metrics_with_exemplars() -> None:
    doc = {
        "resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]},
            "scopeMetrics": [{"scope": {"name": "s"}, "metrics": [{
                "name": "model.stage.latency", "unit": "s",
                "histogram": {"aggregationTemporality": 2, "dataPoints": [{
                    "attributes": [{"key": "stage", "value": {"stringValue": "inference"}}],
                    "count": "3", "sum": 0.25, "bucketCounts": ["1", "1", "1"], "explicitBounds": [0.01, 0.1],
                    "exemplars": [{"asDouble": 0.2, "timeUnixNano": "1700000000000000000",
                                   "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174"}],
                }]},
            }]}],
        }]
    }  # fmt: skip
    with running_collector() as c:
        status, _, body = http_post(c.urls["otlp_http"] + "/v1/metrics", json.dumps(doc).encode(),
                                    {"Content-Type": "application/json"})  # fmt: skip
        assert status == 200, body
        assert json.loads(body) == {}
        fams = scrape(c, openmetrics=True)
        fam = "model_stage_latency_seconds"
        assert sample(fams, fam, fam + "_bucket", le="0.1", stage="inference") == 2
        ex = [e for (n, lb), e in fams[fam]["exemplars"].items() if dict(lb)["le"] == "+Inf"]
        assert ex and ex[0].labels == {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174"}
        assert ex[0].value == 0.2
        assert http_get(c.urls["listen"] + "/healthz")[0] == 200


def test_extreme_exponential_histogram_scale_renders() -> None:
    point = {"count": "3", "sum": 5.0, "scale": -10, "zeroCount": "1",
             "positive": {"offset": 0, "bucketCounts": ["1", "1"]}}  # fmt: skip
    doc = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{
        "name": "huge", "exponentialHistogram": {"aggregationTemporality": 1, "dataPoints": [point]}}]}]}]}  # fmt: skip
    with running_collector() as c:
        assert http_post(c.urls["otlp_http"] + "/v1/metrics", json.dumps(doc).encode(),
                         {"Content-Type": "application/json"})[0] == 200  # fmt: skip
        for om in (False, True):
            fams = scrape(c, openmetrics=om)
            assert sample(fams, "huge", "huge_bucket", le="+Inf") == 3
            assert sample(fams, "huge", "huge_bucket", le="0") == 1


def test_a_scrape_formats_a_copy_after_letting_go_of_the_store_lock(monkeypatch) -> None:
    """Formatting is most of a render's time: holding the lock through it stalled ingest for seconds on a
    full store. What ingest merges while a scrape formats shows in the next scrape, not half in this one."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    from modeltel_collector.process.spanmetrics import process_traces
    from modeltel_collector.serve import exposition
    from modeltel_collector.store.metrics import MetricStore
    from tests.collector_helpers import trace_request

    def prediction():
        req = trace_request(1)
        req.resource_spans[0].scope_spans[0].spans[0].attributes.extend([
            KeyValue(key=tx.SPAN_ATTR_KIND, value=AnyValue(string_value=tx.SPAN_KIND_PREDICTION)),
            KeyValue(key=tx.ATTR_MODEL_NAME, value=AnyValue(string_value="m")),
        ])  # fmt: skip
        return req

    store = MetricStore()
    process_traces(prediction(), store)
    held_while_formatting = []
    histograms = exposition._histograms

    def formatting(*args) -> None:
        held_while_formatting.append(store.lock.locked())
        if not store.lock.locked():  # (under the lock this would wait for ever)
            process_traces(prediction(), store)
        histograms(*args)

    monkeypatch.setattr(exposition, "_histograms", formatting)
    count = f'{tx.PREDICTION_LATENCY.prometheus_name}_count{{instance="",job="raw",model_name="m"'
    first = exposition.render(store, None, False).decode()
    assert held_while_formatting and not any(held_while_formatting)
    assert [line.rsplit(" ", 1)[1] for line in first.splitlines() if line.startswith(count)] == ["1"]
    second = exposition.render(store, None, False).decode()
    assert [line.rsplit(" ", 1)[1] for line in second.splitlines() if line.startswith(count)] == ["2"]
