"""End to end with a real Prometheus (Debian package) scraping the collector, exemplars included.

The test starts ``prometheus`` on a free loopback port with exemplar storage, waits (bounded) for the
scraped values, and checks that every exemplar's trace id resolves in the collector's trace API.
In CI (CI=true) a missing binary is a failure, elsewhere a skip (``tests/binaries.py``).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from modeltel import taxonomy as tx
from tests.binaries import require_binary
from tests.collector_helpers import http_get, meter_provider, metric_exporter, running_collector, tracer_provider
from tests.instr.servers import free_port


def _query(base: str, path: str, **params: str) -> dict:
    status, _, body = http_get(f"{base}{path}?{urllib.parse.urlencode(params)}")
    assert status == 200, body
    return json.loads(body)["data"]


def _wait_for(fn, timeout_s: float = 45.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


@contextmanager
def run_prometheus(tmp_path, target_url: str, scrape_extra: str = "") -> Iterator[str]:
    """A real Prometheus scraping ``target_url`` every second; yields its base URL once it is ready.

    ``scrape_extra`` is appended to the scrape job (YAML at 4 spaces: scheme, authorization, tls_config).
    """
    binary = require_binary("prometheus", package="prometheus")
    port = free_port()
    target = target_url.split("://", 1)[-1]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: modeltel-collector\n    honor_labels: true\n"
        f"    static_configs:\n      - targets: ['{target}']\n{scrape_extra}"
    )
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            assert _wait_for(lambda: _safe_status(base + "/-/ready") == 200, 30), log_path.read_text()[-2000:]
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def scrape_health(base: str, after: float, timeout_s: float = 20.0) -> tuple[float, str]:
    """(up, last scrape error) of the first scrape of the collector that started after ``after`` (unix s)."""

    def fresh():
        result = _query(base, "/api/v1/query", query='timestamp(up{job="modeltel-collector"})')["result"]
        return bool(result) and float(result[0]["value"][1]) > after

    assert _wait_for(fresh, timeout_s), "Prometheus did not scrape the collector"
    up = _query(base, "/api/v1/query", query='up{job="modeltel-collector"}')["result"]
    target = _query(base, "/api/v1/targets")["activeTargets"][0]
    return float(up[0]["value"][1]), target["lastError"]


def test_real_prometheus_scrapes_values_and_exemplars(tmp_path) -> None:
    with running_collector() as c:
        tp = tracer_provider(c, "grpc")
        mp = meter_provider(metric_exporter(c, "http"))
        tracer = tp.get_tracer(tx.TRACER_NAME)
        meter = mp.get_meter(tx.METER_NAME)
        hist = meter.create_histogram(tx.PREDICTION_LATENCY.otel_name, unit="s",
                                      explicit_bucket_boundaries_advisory=list(tx.LATENCY_BUCKETS_SECONDS))  # fmt: skip
        counter = meter.create_counter(tx.PREDICTIONS.otel_name, unit=tx.PREDICTIONS.unit)
        attrs = {tx.ATTR_MODEL_NAME: "iris", tx.ATTR_MODEL_VERSION: "v1"}
        latencies = [0.004, 0.012, 0.045, 0.08, 0.2, 0.6, 0.045]
        for latency in latencies:
            with tracer.start_as_current_span("predict", attributes={tx.SPAN_ATTR_KIND: "prediction", **attrs}):
                hist.record(latency, attrs)  # recorded inside the span: exemplar carries its trace id
                counter.add(1, {**attrs, tx.ATTR_STATUS: "success"})
        assert tp.force_flush() and mp.force_flush()
        c.flush()

        with run_prometheus(tmp_path, c.urls["listen"]) as base:
            count_q = 'model_prediction_latency_seconds_count{job="svc",model_name="iris"}'
            result = _wait_for(lambda: _query(base, "/api/v1/query", query=count_q)["result"])
            assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
            assert float(result[0]["value"][1]) == len(latencies)
            assert result[0]["metric"]["instance"] == "i1"  # from service.instance.id (honor_labels)
            bucket_q = 'model_prediction_latency_seconds_bucket{job="svc",le="0.05"}'
            assert float(_query(base, "/api/v1/query", query=bucket_q)["result"][0]["value"][1]) == 4
            total = _query(base, "/api/v1/query", query='model_predictions_total{status="success"}')["result"]
            assert float(total[0]["value"][1]) == len(latencies)
            up = _query(base, "/api/v1/query", query='up{job="modeltel-collector"}')["result"]
            assert float(up[0]["value"][1]) == 1

            def exemplars():
                now = time.time()
                data = _query(base, "/api/v1/query_exemplars", query="model_prediction_latency_seconds_bucket",
                              start=str(now - 3600), end=str(now + 60))  # fmt: skip
                return [e for series in data for e in series["exemplars"]]

            found = _wait_for(exemplars)
            assert found, "Prometheus stored no exemplars"
            for ex in found:
                trace_id = ex["labels"]["trace_id"]
                status, _, body = http_get(f"{c.urls['listen']}/api/traces/{trace_id}")
                assert status == 200, trace_id
                assert json.loads(body)["spans"][0]["name"] == "predict"
                assert float(ex["value"]) in latencies
        tp.shutdown()
        mp.shutdown()


def _safe_status(url: str) -> int:
    try:
        return http_get(url)[0]
    except OSError:
        return 0
