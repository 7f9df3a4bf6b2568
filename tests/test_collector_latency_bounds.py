"""A latency histogram whose bucket bounds cannot hold the taxonomy's range is said once per resource and
metric, counted on /metrics, and flagged in the console's series."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from modeltel import taxonomy as tx
from tests.collector_helpers import http_get, meter_provider, metric_exporter, running_collector, sample, scrape
from tests.console_helpers import settle

# The OpenTelemetry JS (and Java, Go, .NET) SDKs' default bounds, made for milliseconds
MILLISECOND_BOUNDS = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
LATENCIES = (tx.PREDICTION_LATENCY, tx.STAGE_LATENCY)


def _app(c, service: str, bounds: tuple[float, ...]):
    views = [
        View(instrument_name=i.otel_name, aggregation=ExplicitBucketHistogramAggregation(bounds)) for i in LATENCIES
    ]
    mp = meter_provider(metric_exporter(c, "http"), service=service, views=views)
    meter = mp.get_meter("app")
    model = {tx.ATTR_MODEL_NAME: service, tx.ATTR_MODEL_VERSION: "v1"}
    hists = [meter.create_histogram(i.otel_name, i.unit, i.description) for i in LATENCIES]

    def serve() -> None:
        hists[0].record(0.012, model)
        hists[1].record(0.010, {**model, tx.ATTR_STAGE: tx.STAGE_INFERENCE})
        assert mp.force_flush()

    return mp, serve


def test_millisecond_bounds_on_a_seconds_histogram_are_said_once_counted_and_flagged(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="modeltel_collector")
    with running_collector(otlp_grpc="", console_step_s=0.25, console_history_s=60) as c:
        js, serve_js = _app(c, "js-app", MILLISECOND_BOUNDS)
        py, serve_py = _app(c, "py-app", tx.LATENCY_BUCKETS_SECONDS)
        for _ in range(3):  # three exports each: the warning does not repeat
            serve_js()
            serve_py()
        settle(c)
        warnings = [r.getMessage() for r in caplog.records if r.name == "modeltel_collector"]
        assert len(warnings) == 2, warnings
        for inst, line in zip(LATENCIES, sorted(warnings), strict=True):
            assert inst.prometheus_name in line and "js-app" in line and "first positive bucket bound is 5 s" in line

        fams = scrape(c)
        unfit = "modeltel_collector_unfit_latency_points"
        for inst in LATENCIES:  # each export carries one point per series; the app's three exports
            assert sample(fams, unfit, unfit + "_total", metric=inst.prometheus_name) == 3

        def console(model: str) -> dict:
            status, _, body = http_get(f"{c.urls['listen']}/api/v1/console/model?name={model}&version=v1")
            assert status == 200
            return {s["stage"]: s["bounds_warning"] for s in json.loads(body)["stages"]}

        js_flags, py_flags = console("js-app"), console("py-app")
        assert set(js_flags) == {"prediction", tx.STAGE_INFERENCE} == set(py_flags)
        assert all("5 s" in flag for flag in js_flags.values()) and not any(py_flags.values())
        status, _, body = http_get(f"{c.urls['listen']}/api/v1/console/models")
        assert status == 200
        rows = {r["model"]: r["bounds_warning"] for r in json.loads(body)["models"]}
        assert "5 s" in rows["js-app"] and rows["py-app"] is None
        js.shutdown()
        py.shutdown()
