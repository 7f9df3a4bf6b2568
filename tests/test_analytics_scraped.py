"""``modeltel baseline capture --collector``: a baseline from what a collector's /metrics adds over a window."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("scipy")

from modeltel_collector.analytics.baseline import load, to_reference, validate
from modeltel_collector.analytics.detectors import CONFIDENCE_BOUNDS
from modeltel_collector.analytics.scraped import bucket_counts, capture_scraped
from modeltel_collector.analytics_cli import baseline

_LAT = "model_prediction_latency_seconds_bucket"
_CONF = "model_prediction_confidence_bucket"


def _text(n: int, errors: int, slow: int, labelled: int, correct: int) -> str:
    """Exposition with ``n`` predictions (``slow`` of them in the 0.1-0.25 s bucket, the rest under 0.05 s)."""
    m = 'model_name="iris",model_version="2"'
    return "\n".join([
        "# TYPE model_predictions_total counter",
        f'model_predictions_total{{{m},status="success"}} {n - errors}',
        f'model_predictions_total{{{m},status="error"}} {errors}',
        'model_predictions_total{model_name="idle",model_version="1",status="success"} 7',
        f'model_labelled_predictions_total{{{m},correct="true"}} {correct}',
        f'model_labelled_predictions_total{{{m},correct="false"}} {labelled - correct}',
        f'{_LAT}{{{m},le="0.05"}} {n - slow}', f'{_LAT}{{{m},le="0.1"}} {n - slow}',
        f'{_LAT}{{{m},le="0.25"}} {n}', f'{_LAT}{{{m},le="+Inf"}} {n}',
        *(f'{_CONF}{{{m},le="{le}"}} {0 if le <= 0.5 else n // 2 if le <= 0.9 else n}' for le in CONFIDENCE_BOUNDS),
        f'{_CONF}{{{m},le="+Inf"}} {n}',
        "",
    ])  # fmt: skip


def test_the_increase_over_the_window_is_the_baseline():
    doc = capture_scraped(_text(100, 1, 0, 10, 9), _text(1100, 21, 100, 110, 99), (1000.0, 1100.0))
    assert validate(doc) == []
    (m,) = doc["models"]  # "idle" added nothing over the window: no entry
    assert (m["model_name"], m["model_version"], m["requests"], m["errors"]) == ("iris", "2", 1000, 20)
    assert m["rate_per_second"] == pytest.approx(10.0) and m["accuracy"] == pytest.approx(0.9)
    lat = m["latency_seconds"]
    assert lat["p50"] < 0.05 and 0.1 < lat["p95"] <= 0.25  # 10 % slow: p95 inside the slow bucket
    counts = m["confidence_histogram"]["counts"]  # half in (0.5, 0.6], half in (0.9, 0.95]: the buckets as sent
    assert counts[CONFIDENCE_BOUNDS.index(0.6)] == counts[CONFIDENCE_BOUNDS.index(0.95)] == 500 == sum(counts) / 2
    assert len(to_reference(m).latencies) == 1000  # the detectors can compare against it


def test_confidence_with_other_bucket_bounds_counts_nothing_rather_than_guessing():
    assert bucket_counts({0.5: 10.0, 0.9: 20.0, float("inf"): 30.0}).sum() == 0


class _Metrics(BaseHTTPRequestHandler):
    texts: list[str] = []

    def do_GET(self):
        body = (self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_cli_captures_from_a_collector_and_refuses_an_idle_one(tmp_path, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        _Metrics.texts = [_text(100, 1, 0, 10, 9), _text(600, 6, 50, 10, 9)]
        out = tmp_path / "baseline-metrics.json"
        assert baseline(["capture", "--collector", url, "--window", "0.2", "--out", str(out)]) == 0
        assert load(out)["models"][0]["requests"] == 500
        _Metrics.texts = [_text(100, 1, 0, 10, 9)]
        assert baseline(["capture", "--collector", url, "--window", "0.1", "--out", str(tmp_path / "x")]) == 1
        assert "no predictions at" in capsys.readouterr().err and not (tmp_path / "x").exists()
    finally:
        server.shutdown()


def test_cli_captures_from_a_real_prometheus(tmp_path):
    from tests.test_collector_prometheus import _query, _wait_for, run_prometheus

    t0 = time.time()

    class Growing(_Metrics):
        def do_GET(self):
            n = int((time.time() - t0) * 100) + 100  # 100 predictions a second, 1 % failing, 10 % slow
            self.texts = [_text(n, n // 100, n // 10, 0, 0)]
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Growing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "baseline-metrics.json"
    try:
        with run_prometheus(tmp_path, f"http://127.0.0.1:{server.server_port}") as prom:
            enough = 'min(count_over_time(model_predictions_total{model_name="iris"}[5s])) >= 4'
            assert _wait_for(lambda: _query(prom, "/api/v1/query", query=enough)["result"], 30)
            assert baseline(["capture", "--prometheus", prom, "--window", "5", "--out", str(out)]) == 0
    finally:
        server.shutdown()
    (m,) = load(out)["models"]
    assert m["model_name"] == "iris" and 200 <= m["requests"] <= 800
    assert m["error_rate"] == pytest.approx(0.01, abs=0.005)
    assert 0.1 < m["latency_seconds"]["p95"] <= 0.25 and m["latency_seconds"]["p50"] < 0.05
