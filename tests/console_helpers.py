"""Console test helpers: demo-shaped traffic through the modeltel SDK, hostile spans, a headless Chromium."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from opentelemetry import trace

import modeltel
from modeltel import taxonomy as tx
from modeltel.cli.loopback import MODEL_NAME, MODEL_VERSION
from modeltel_collector import Collector
from tests.binaries import require_binary
from tests.collector_helpers import tracer_provider

SLOW_S = 0.03  # every fifth request sleeps this long in inference: the traces the searches must find
HOSTILE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=1">'


def send_demo_traffic(c: Collector, requests: int = 30, token: str = "") -> None:
    """Requests shaped like the demo's iris server (three stages, batch size, confidence) over real OTLP."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.urls["otlp_http"])
        mp.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        mp.setenv("OTEL_SERVICE_NAME", "iris-demo")
        mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        if token:
            mp.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer {token}")
        pipeline = modeltel.init(set_global=False, gpu_metrics=False)
        try:
            for i in range(requests):
                with modeltel.prediction(MODEL_NAME, MODEL_VERSION):
                    with modeltel.stage(tx.STAGE_PREPROCESS):
                        modeltel.record_batch_size(1 + i % 4, MODEL_NAME, MODEL_VERSION)
                    with modeltel.stage(tx.STAGE_INFERENCE):
                        time.sleep(SLOW_S if i % 5 == 0 else 0.001)
                    with modeltel.stage(tx.STAGE_POSTPROCESS):
                        modeltel.record_confidence(0.5 + (i % 5) / 10, MODEL_NAME, MODEL_VERSION)
            pipeline.force_flush()  # while the host meters still observe (shutdown closes them first)
        finally:
            modeltel.shutdown()
    settle(c)


GEN_MODEL, GEN_VERSION = "chat-llm", "1"
GEN_TTFT_S = 0.04  # each generation's first token comes after this long; then GEN_TOKENS - 1 more
GEN_TOKENS, GEN_GAP_S, GEN_INPUT_TOKENS = 5, 0.005, 12


def _token_stream() -> Iterator[str]:
    time.sleep(GEN_TTFT_S)
    yield "Hello"
    for i in range(GEN_TOKENS - 1):
        time.sleep(GEN_GAP_S)
        yield f" t{i}"


def send_generations(c: Collector, generations: int = 6) -> None:
    """Streamed generations through the modeltel SDK (``modeltel.stream``), traces and metrics over OTLP."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.urls["otlp_http"])
        mp.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        mp.setenv("OTEL_SERVICE_NAME", "chat-demo")
        mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        pipeline = modeltel.init(set_global=False, gpu_metrics=False, host_metrics=False)
        try:
            for _ in range(generations):
                stream = modeltel.stream(_token_stream(), model_name=GEN_MODEL, model_version=GEN_VERSION,
                                         operation="chat", input_tokens=GEN_INPUT_TOKENS)  # fmt: skip
                assert "".join(stream).startswith("Hello")
            pipeline.force_flush()
        finally:
            modeltel.shutdown()
    settle(c)


def send_hostile_trace(c: Collector) -> str:
    """One prediction whose span name, model name and attributes carry markup; returns its trace id."""
    tp = tracer_provider(c, "http", service=HOSTILE)
    attrs = {tx.SPAN_ATTR_KIND: tx.SPAN_KIND_PREDICTION, tx.ATTR_MODEL_NAME: HOSTILE, "user.input": HOSTILE}
    with tp.get_tracer("hostile").start_as_current_span(HOSTILE, attributes=attrs) as span:
        span.add_event(HOSTILE, {"detail": HOSTILE})
        span.set_status(trace.Status(trace.StatusCode.ERROR, HOSTILE))
        trace_id = format(span.get_span_context().trace_id, "032x")
    tp.shutdown()
    settle(c)
    return trace_id


def settle(c: Collector) -> None:
    """Everything sent is merged, and the history holds it (one sample after the merge)."""
    c.flush()
    c.history.sample()


@contextmanager
def chromium(*, profile: Path | None = None) -> Iterator[object]:
    """A headless Debian Chromium through Selenium and chromium-driver, with the console log kept; ``profile``
    is its user data directory (history, caches, storage), to read what the browser wrote after it quits."""
    from selenium import webdriver  # in the test extra: missing, it is an error, not a skip

    browser = require_binary("chromium", package="chromium")
    driver = require_binary("chromedriver", package="chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,1000")
    if profile is not None:
        opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver))
    drv.implicitly_wait(0)
    try:
        yield drv
    finally:
        drv.quit()


def fire_in_alertmanager(url: str, summary: str = HOSTILE) -> None:
    """Post one firing alert, shaped like the generated rules', to a real Alertmanager's API v2."""
    alert = {
        "labels": {"alertname": "HighErrorRate", "severity": "warning", "model_name": "iris", "model_version": "1"},
        "annotations": {"summary": summary, "runbook_url": "javascript:alert(1)"},
    }
    request = urllib.request.Request(
        url + "/api/v2/alerts", json.dumps([alert]).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    urllib.request.urlopen(request, timeout=5).close()


def add_detection(c: Collector, model: str = HOSTILE) -> None:
    """Hand the collector's detectors one firing latency shift, as their engine would (skips without them)."""
    if c.analytics is None:
        pytest.skip("the degradation detectors need the analytics extra (numpy, scipy)")
    from modeltel_collector.analytics.detectors import Result, Status
    from modeltel_collector.analytics.engine import Event

    result = Result("latency_shift", Status.DEGRADED, tx.Severity.CRITICAL, p_value=1e-9, effect_size=0.8)
    c.analytics.record([Event(time.time(), model, "1", "latency_shift", "firing", tx.Severity.CRITICAL, result)])
