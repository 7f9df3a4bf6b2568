"""The console's JSON API and static pages over HTTP: content from SDK traffic, auth, read-only, errors."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from itertools import pairwise

import pytest

from modeltel import taxonomy as tx
from modeltel.cli.loopback import MODEL_NAME, MODEL_VERSION
from modeltel_collector import Collector
from modeltel_collector.store.spans import SpanStore, TraceRow
from modeltel_collector.store.spansearch import MAX_SEARCH_LIMIT
from tests.collector_helpers import http_get, http_post, running_collector
from tests.console_helpers import (
    GEN_MODEL,
    GEN_TOKENS,
    GEN_TTFT_S,
    GEN_VERSION,
    HOSTILE,
    SLOW_S,
    add_detection,
    fire_in_alertmanager,
    send_demo_traffic,
    send_generations,
)

API = "/api/v1/console/"


@pytest.fixture(scope="module")
def demo() -> Iterator[Collector]:
    with running_collector(console_step_s=0.25, console_history_s=120) as c:
        send_demo_traffic(c, requests=30)
        yield c


def get_json(c: Collector, path: str, token: str = "") -> tuple[int, dict]:
    status, _, body = http_get(c.urls["listen"] + path, {"Authorization": f"Bearer {token}"} if token else {})
    return status, json.loads(body)


def test_models_lists_the_model_with_its_rate_errors_and_quantiles(demo: Collector):
    status, doc = get_json(demo, API + "models")
    assert status == 200
    (row,) = doc["models"]
    assert (row["model"], row["version"]) == (MODEL_NAME, MODEL_VERSION)
    assert row["requests_per_s"] > 0 and row["error_ratio"] == 0
    assert 0 < row["p50"] <= row["p95"] <= row["p99"]
    assert row["p99"] >= SLOW_S * 0.9  # one request in five sleeps SLOW_S: the tail sees them
    assert any(v for v in row["sparkline"] if v)
    assert doc["history"]["bytes"] <= doc["history"]["max_bytes"]


def test_model_has_stage_charts_whose_exemplars_resolve_to_traces(demo: Collector):
    status, doc = get_json(demo, f"{API}model?name={MODEL_NAME}&version={MODEL_VERSION}")
    assert status == 200
    assert [s["stage"] for s in doc["stages"]] == ["prediction", "preprocess", "inference", "postprocess"]
    for stage in doc["stages"]:
        assert len(stage["p95"]) == len(doc["times"]) and any(v is not None for v in stage["p95"])
    inference = doc["stages"][2]
    assert inference["exemplars"]
    for ex in inference["exemplars"]:
        status, trace = get_json(demo, f"/api/traces/{ex['trace_id']}")
        assert status == 200
        span = next(s for s in trace["spans"] if s["span_id"] == ex["span_id"])
        assert span["name"] == "inference"
        assert span["duration_ms"] / 1e3 == pytest.approx(ex["value"], rel=0.05, abs=1e-4)
    success = next(g for g in doc["throughput"] if g["label"] == "success")
    assert sum(r or 0 for r in success["rate"]) > 0
    assert doc["errors"] == []
    assert any(v for v in doc["batch_size"]["mean"] if v)
    assert sum(b["count"] for b in doc["confidence_distribution"]) == 30


def test_trace_search_gives_version_pipeline_ordered_stages_and_says_when_capped(demo: Collector):
    status, doc = get_json(demo, "/api/traces?limit=10")
    assert status == 200 and (doc["limit"], doc["capped"], len(doc["traces"])) == (10, True, 10)
    for t in doc["traces"]:
        assert (t["model"], t["version"]) == (MODEL_NAME, MODEL_VERSION)
        assert t["stages"] == list(tx.CANONICAL_STAGES)  # the order a request runs through them
    _, doc = get_json(demo, "/api/traces?limit=5000")
    assert (doc["limit"], doc["capped"]) == (MAX_SEARCH_LIMIT, False)  # 30 traces: all of them


def test_a_span_store_from_before_the_version_column_opens_and_gains_it(tmp_path):
    path = str(tmp_path / "old.db")
    with closing(sqlite3.connect(path)) as db:
        db.execute(
            "CREATE TABLE traces (trace_id BLOB NOT NULL, service TEXT, model TEXT, stages TEXT, kinds TEXT, name TEXT,"
            " status INTEGER, start_ns INTEGER, duration_ns INTEGER, span_id BLOB, span_count INTEGER, data BLOB)"
        )
        db.execute(
            "INSERT INTO traces VALUES (?, 's', 'old', ',', ',', 'x', 0, 1, 1, ?, 1, x'')", (b"o" * 16, b"o" * 8)
        )
        db.commit()
    store = SpanStore(path)
    store.start()
    store.put([TraceRow(b"n" * 16, "s", "new", ",", ",", "x", 0, 2, 1, b"n" * 8, 1, b"", "2.0")])
    store.close()
    store = SpanStore(path)
    assert {(t["model"], t["version"]) for t in store.search()} == {("old", ""), ("new", "2.0")}
    store.close()


def test_model_without_version_covers_every_version(demo: Collector):
    _, doc = get_json(demo, f"{API}model?name={MODEL_NAME}")
    assert [s["stage"] for s in doc["stages"]][:2] == ["prediction", "preprocess"]


@pytest.mark.parametrize(
    ("path", "status"),
    [(API + "model", 400), (API + "model?name=x&range_s=soon", 400), (API + "models?window_s=-1", 400),
     (API + "nope", 404)],
)  # fmt: skip
def test_bad_requests_get_a_reason(demo: Collector, path: str, status: int):
    got, doc = get_json(demo, path)
    assert got == status and doc["error"]


def test_pages_are_static_files_with_a_strict_content_security_policy(demo: Collector):
    status, headers, body = http_get(demo.urls["listen"] + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script type="module" src="/console/app.js">' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    for asset in ("app.js", "util.js", "pages.js", "chart.js", "console.css", "favicon.svg"):
        assert http_get(f"{demo.urls['listen']}/console/{asset}")[0] == 200, asset


def test_nothing_writes(demo: Collector):
    for path in ("/", API + "models", "/api/traces"):
        assert http_post(demo.urls["listen"] + path, b"{}", {"Content-Type": "application/json"})[0] == 501


def test_with_a_token_the_api_needs_it_and_the_pages_hold_no_data():
    with running_collector(auth_token="s3cret", console_step_s=0.25, console_history_s=60) as c:
        send_demo_traffic(c, requests=5, token="s3cret")
        for path in (API + "models", f"{API}model?name={MODEL_NAME}", API + "resources", API + "history"):
            assert get_json(c, path)[0] == 401
            assert get_json(c, path, token="wrong")[0] == 401
            assert get_json(c, path, token="s3cret")[0] == 200
        status, _, body = http_get(c.urls["listen"] + "/")
        assert status == 200 and MODEL_NAME.encode() not in body


def test_console_off_leaves_the_listen_address_as_it_was():
    with running_collector(console=False) as c:
        assert c.history is None
        assert get_json(c, "/")[0] == 404
        assert get_json(c, API + "models")[0] == 404
        assert http_get(c.urls["listen"] + "/metrics")[0] == 200


def test_resources_carry_the_host_meters_per_source(demo: Collector):
    _, doc = get_json(demo, API + "resources")
    usage = {m["labels"]["resource_type"]: m for m in doc["meters"] if m["name"] == "model_resource_usage"}
    assert set(usage) == {"cpu", "memory"}
    assert usage["memory"]["labels"]["job"] == "iris-demo" and 0 < usage["memory"]["latest"] <= 100
    assert len(usage["memory"]["values"]) == len(usage["memory"]["times"])


def test_alerts_lists_the_detections_and_what_fires_in_alertmanager(alertmanager: str):
    with running_collector(alertmanager_url=alertmanager) as c:
        status, doc = get_json(c, API + "alerts")
        assert status == 200 and doc["alertmanager"] == {"url": alertmanager, "alerts": []}
        fire_in_alertmanager(alertmanager)
        add_detection(c)
        status, doc = get_json(c, API + "alerts")
        (alert,) = doc["alertmanager"]["alerts"]
        assert alert["labels"]["alertname"] == "HighErrorRate" and alert["annotations"]["summary"] == HOSTILE
        (detection,) = doc["detections"]
        assert (detection["check"], detection["state"], detection["severity"]) == (
            "latency_shift",
            "firing",
            "critical",
        )


def test_alerts_shows_what_the_detection_engine_found_in_received_spans():
    # end to end: prediction spans over OTLP, ingest's facts, the engine's windows, the console's answer
    pytest.importorskip("scipy")
    import numpy as np

    from tests.test_analytics_live import _send, _spans

    rng, now = np.random.default_rng(0), time.time()
    with running_collector(otlp_grpc="") as c:
        c.analytics.stop()  # polled below, at a time of the test's choosing
        for start in range(-1300, -400, 100):  # 15 healthy minutes, then 5 at twice the latency
            _send(c, _spans("slow", now + start, 100, rng))
        for start in range(-400, -100, 100):
            _send(c, _spans("slow", now + start, 100, rng, slow=2.0))
        c.flush()
        c.analytics.poll(now - 90)  # the data end at now - 100
        status, doc = get_json(c, API + "alerts")
    assert status == 200 and doc["alertmanager"] is None
    firing = [d for d in doc["detections"] if d["state"] == "firing"]
    assert [(d["model"], d["version"], d["check"], d["severity"]) for d in firing] == [
        ("slow", "3", "latency_shift", "critical")
    ]
    assert firing[0]["time"] <= now - 90


def test_alerts_says_when_alertmanager_is_not_there():
    with running_collector(alertmanager_url="http://127.0.0.1:9") as c:
        status, doc = get_json(c, API + "alerts")
        assert status == 200 and doc["alertmanager"]["error"]
    with running_collector() as c:
        assert get_json(c, API + "alerts")[1]["alertmanager"] is None


@pytest.fixture(scope="module")
def generative() -> Iterator[Collector]:
    with running_collector(console_step_s=0.25, console_history_s=120) as c:
        send_generations(c)
        yield c


def test_a_generative_models_page_has_ttft_tpot_and_token_charts_whose_exemplars_are_its_generations(
    generative: Collector,
):
    status, doc = get_json(generative, f"{API}model?name={GEN_MODEL}&version={GEN_VERSION}")
    assert status == 200
    gen = doc["generation"]
    n = len(doc["times"])
    for chart, lines in (("ttft", ("p50", "p95", "p99")), ("tpot", ("p50", "p95")), ("output_tokens", ("p50", "p95"))):
        for line in lines:
            assert len(gen[chart][line]) == n and any(v is not None for v in gen[chart][line]), (chart, line)
    ttft = [v for v in gen["ttft"]["p50"] if v is not None]
    assert all(GEN_TTFT_S * 0.9 <= v <= 0.25 for v in ttft)  # in the bucket above 40 ms (40 .. 60 ms)
    assert all(0.001 <= v <= 0.05 for v in gen["tpot"]["p50"] if v is not None)
    # 5 tokens a request: a mean of exactly 5, a median inside its bucket (4 .. 16, the powers of 4)
    assert all(v == GEN_TOKENS for v in gen["output_tokens"]["mean"] if v is not None)
    assert all(4 < v <= 16 for v in gen["output_tokens"]["p50"] if v is not None)
    assert any(v for v in gen["input_tokens"]["p50"] if v)
    # a rate over each interval between samples: times the interval, every output token, once
    times = doc["times"]
    gaps = [doc["step_s"], *(b - a for a, b in pairwise(times))]
    produced = sum((v or 0) * dt for v, dt in zip(gen["output_tokens_per_s"], gaps, strict=True))
    assert produced == pytest.approx(6 * GEN_TOKENS, rel=1e-4)
    for key, attribute, expected in (
        ("ttft", tx.SPAN_ATTR_GEN_AI_TIME_TO_FIRST_TOKEN, None),
        ("output_tokens", tx.SPAN_ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, GEN_TOKENS),
    ):
        assert gen[key]["exemplars"], key
        for ex in gen[key]["exemplars"]:
            status, trace = get_json(generative, f"/api/traces/{ex['trace_id']}")
            span = next(s for s in trace["spans"] if s["span_id"] == ex["span_id"])
            assert span["name"] == f"chat {GEN_MODEL}"
            assert ex["value"] == pytest.approx(expected or span["attributes"][attribute], rel=1e-5)
    status, other = get_json(generative, f"{API}model?name=nobody&version=1")
    assert other["generation"] is None


def test_a_models_page_has_its_realized_accuracy_next_to_the_estimate_and_its_band():
    from modeltel_collector.store.metrics import GaugePoint

    labels = {tx.ATTR_MODEL_NAME: "scorer", tx.ATTR_MODEL_VERSION: "4"}
    with running_collector(console_step_s=0.25, console_history_s=60) as c:
        for realized, estimate in ((0.9, 0.8), (0.9, 0.6)):  # two samples: the estimate falls, no label came
            values = (realized, estimate, estimate - 0.05, estimate + 0.05)
            insts = (tx.ONLINE_ACCURACY, *tx.ESTIMATED_ACCURACY_INSTRUMENTS)
            points = [
                GaugePoint(i.prometheus_name, i.description, labels, v) for i, v in zip(insts, values, strict=True)
            ]
            # as the detectors publish them (analytics/live.py)
            c.metrics.set_gauges("modeltel-analytics", "modeltel.analytics", points, max_series=100)
            c.history.sample()
        status, doc = get_json(c, f"{API}model?name=scorer&version=4")
        _, other = get_json(c, f"{API}model?name=nobody&version=1")
    assert status == 200 and other["accuracy"] is None
    accuracy = doc["accuracy"]
    assert all(len(accuracy[k]) == len(doc["times"]) for k in ("realized", "estimated", "low", "high"))
    latest = {k: next(v for v in reversed(values) if v is not None) for k, values in accuracy.items()}
    assert latest == {"realized": 0.9, "estimated": 0.6, "low": 0.55, "high": 0.65}
