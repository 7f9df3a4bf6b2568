"""Every panel query of the committed dashboards, its variables substituted as Grafana does, runs against a
real Prometheus (Debian's) that scraped a modeltel collector while the iris example server served traffic
(with an error burst, so error panels have data) and a generative model streamed tokens; the core panels
return series for the selected model."""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

pytest.importorskip("grafana_foundation_sdk")

from modeltel import taxonomy as tx
from modeltel.cli.alertstack import AlertStack
from modeltel.cli.loopback import MODEL_NAME, MODEL_VERSION
from modeltel.generators.dashboards import substitute
from tests.binaries import require_alert_stack
from tests.panelqueries import load_boards, run_panel_queries

DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
CORE = {  # dashboard -> panels that must return at least one series
    "modeltel-models": {
        "Prediction latency p50 / p95 / p99", "Predictions / s by model and status", "Error rate",
        "Errors / s by type", "Stage latency (preprocess, inference, postprocess, custom)", "Batch size",
        "Prediction confidence", "CPU / memory / GPU use", "Alerts firing now",
        "Time to first token p50 / p95 / p99", "Time per output token p50 / p95", "Output tokens / s",
        "Tokens per request (input, output)", "Generative request duration p95",
    },
    "modeltel-slo": {"SLI against target (over each SLO's window)", "Burn rate per window", "Error budget remaining"},
    "modeltel-gpu": {"Host cpu", "Host memory"},
}  # fmt: skip
WAIT_S = 120  # bound on each wait for scraped data (Prometheus and the server share a loaded machine)


def _stream_genai(otlp_http: str, stop: threading.Event) -> threading.Thread:
    """A generative model's requests, recorded on the taxonomy's gen_ai instruments (names, units, buckets)
    with a plain OpenTelemetry meter and pushed over OTLP to the stack's collector until ``stop``.

    It reports under the iris server's model labels, so the model variable selects both kinds on one page.
    """
    views = [
        View(instrument_name=i.otel_name, aggregation=ExplicitBucketHistogramAggregation(i.buckets))
        for i in tx.GENAI_INSTRUMENTS
    ]
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_http + "/v1/metrics"), export_interval_millis=1000
    )
    resource = Resource.create({"service.name": "genai-e2e", "service.instance.id": "genai-1"})
    provider = MeterProvider(metric_readers=[reader], resource=resource, views=views, shutdown_on_exit=False)
    meter = provider.get_meter(tx.METER_NAME)
    hist = {i.otel_name: meter.create_histogram(i.otel_name, unit=i.unit) for i in tx.GENAI_INSTRUMENTS}
    attrs = {
        tx.ATTR_MODEL_NAME: MODEL_NAME, tx.ATTR_MODEL_VERSION: MODEL_VERSION,
        tx.ATTR_GEN_AI_OPERATION_NAME: tx.GEN_AI_OPERATION_CHAT,
        tx.ATTR_GEN_AI_REQUEST_MODEL: "iris-chat", tx.ATTR_GEN_AI_RESPONSE_MODEL: "iris-chat",
    }  # fmt: skip

    def run() -> None:
        rng = random.Random(25)
        try:
            while not stop.wait(0.05):
                ttft, tpot, tokens_in, tokens_out = rng.uniform(0.2, 1.5), rng.uniform(0.01, 0.05), 800, 200
                hist[tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN.otel_name].record(ttft, attrs)
                hist[tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.otel_name].record(tpot, attrs)
                hist[tx.GEN_AI_SERVER_REQUEST_DURATION.otel_name].record(ttft + tpot * (tokens_out - 1), attrs)
                for token_type, n in ((tx.GEN_AI_TOKEN_INPUT, tokens_in), (tx.GEN_AI_TOKEN_OUTPUT, tokens_out)):
                    usage = {**attrs, tx.ATTR_GEN_AI_TOKEN_TYPE: token_type}
                    hist[tx.GEN_AI_CLIENT_TOKEN_USAGE.otel_name].record(n, usage)
        finally:
            provider.shutdown()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for_series(prometheus: str, expr: str, timeout_s: float = WAIT_S) -> None:
    """Until the instant query ``expr`` returns a series (bounded)."""
    deadline = time.monotonic() + timeout_s
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    while True:
        with urllib.request.urlopen(url) as r:
            if json.load(r)["data"]["result"]:
                return
        assert time.monotonic() < deadline, f"no series for {expr} within {timeout_s:.0f} s"
        time.sleep(0.5)


def _wait_for_core_panels(prometheus: str, boards: dict, values: dict[str, str], timeout_s: float = WAIT_S) -> float:
    """Until every core panel returns a series for the selected model (bounded); returns that moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        end = time.time()
        results = run_panel_queries(prometheus, boards, start=end - 600, end=end, rate_interval="5s", values=values)
        empty = {(uid, p) for uid, panels in CORE.items() for p in panels} - {
            (r.dashboard, r.panel) for r in results if r.series
        }
        if not empty:
            return end
        assert time.monotonic() < deadline, f"core panels without data after {timeout_s:.0f} s: {sorted(empty)}"
        time.sleep(1)


def _variable_values(prometheus: str, board: dict, values: dict[str, str]) -> dict[str, list[str]]:
    """What each query variable's ``label_values(selector, label)`` lists, as Grafana would fetch it."""
    out = {}
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.*), (\w+)\)", var["query"]["query"])
        assert match, var["query"]
        selector = urllib.parse.quote(substitute(match[1], "1m", values))
        with urllib.request.urlopen(f"{prometheus}/api/v1/label/{match[2]}/values?match[]={selector}") as r:
            out[var["name"]] = json.load(r)["data"]
    return out


def test_every_panel_query_runs_on_real_data(tmp_path: Path) -> None:
    require_alert_stack()
    boards = load_boards(DASHBOARDS)
    selected = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION}
    with AlertStack(tmp_path, interval="1s") as stack:
        stack.load(600, rate=40)  # stopped when the stack closes
        _stream_genai(stack.collector_urls["otlp_http"], stack.stop_load)
        # successful requests first (the exemplar check below opens one), scraped at least twice
        _wait_for_series(stack.prometheus_url, 'rate(model_predictions_total{status="success"}[5s]) > 0')
        stack.inject(error_fraction=0.3)  # errors by type, error rate and the alerts table get data
        end = _wait_for_core_panels(stack.prometheus_url, boards, selected)
        variables = _variable_values(stack.prometheus_url, boards["modeltel-models"], selected)
        assert variables["model_name"] == [MODEL_NAME] and variables["model_version"] == [MODEL_VERSION]
        assert variables["job"] and variables["instance"]
        for values in (None, selected):  # "All", then the model picked in the variable
            results = run_panel_queries(
                stack.prometheus_url, boards, start=end - 6 * 3600, end=end, rate_interval="5s", values=values
            )
            assert not [r for r in results if r.error], [(r.panel, r.expr, r.error) for r in results if r.error]
            assert len(results) == sum(1 for b in boards.values() for p in b["panels"] for _ in p.get("targets") or [])
            for uid, panels in CORE.items():
                for panel in panels:
                    assert any(r.series for r in results if (r.dashboard, r.panel) == (uid, panel)), (uid, panel)
        _exemplar_opens_its_trace(stack, boards["modeltel-models"], end)
        nothing = run_panel_queries(
            stack.prometheus_url, boards, start=end - 600, end=end, rate_interval="5s", values={"model_name": "none"}
        )
        assert not any(r.series for r in nothing if r.dashboard == "modeltel-models"), "the model variable filters"


def _whole_trace(collector: str, trace_id: str, timeout_s: float = 30.0) -> dict:
    """The trace an exemplar names, through the Jaeger API, once it is whole (one root, every parent in it).

    Metrics leave the server every second; spans leave in batches (of 512, or every
    ``OTEL_BSP_SCHEDULE_DELAY``), in the order they end. So the newest exemplar can name a trace that is
    not there yet (404: the case CI met), or whose early spans (the ASGI receive) came in one batch and the
    rest are in the next (also met). A click in Grafana a few seconds later opens the whole trace, and so
    does this wait; after ``timeout_s`` the trace as it is goes to the assertions (404: raised)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{collector}/jaeger/api/traces/{trace_id}") as r:
                (trace,) = json.load(r)["data"]
            ids = {s["spanID"] for s in trace["spans"]}
            parents = [s["references"][0]["spanID"] for s in trace["spans"] if s["references"]]
            if len(ids) > 1 and len(parents) == len(ids) - 1 and set(parents) <= ids:
                return trace
        except urllib.error.HTTPError as e:
            if e.code != 404 or time.monotonic() > deadline:
                raise
        else:
            if time.monotonic() > deadline:
                return trace
        time.sleep(0.5)


def _exemplar_opens_its_trace(stack: AlertStack, board: dict, end: float) -> None:
    """What a click on a latency exemplar does in Grafana: the exemplar's trace_id, through the provisioned
    Jaeger datasource (the collector's /jaeger API), gives the request's span tree from the example server."""
    latency = next(p for p in board["panels"] if p["title"] == "Prediction latency p50 / p95 / p99")
    expr = substitute(latency["targets"][0]["expr"], "5s")
    params = urllib.parse.urlencode({"query": expr, "start": end - 120, "end": end})
    with urllib.request.urlopen(f"{stack.prometheus_url}/api/v1/query_exemplars?{params}") as r:
        exemplars = [e for series in json.load(r)["data"] for e in series["exemplars"]]
    assert exemplars, "the latency panel has exemplars"
    # the newest exemplar of a request that succeeded (the error burst's fail before postprocess)
    for exemplar in reversed(exemplars):
        trace = _whole_trace(stack.collector_urls["listen"], exemplar["labels"]["trace_id"])
        if not any(t["key"] == "error" and t["value"] for s in trace["spans"] for t in s["tags"]):
            break
    spans = {s["spanID"]: s for s in trace["spans"]}
    roots = [s for s in spans.values() if not s["references"]]
    assert len(roots) == 1 and len(spans) > 1, [s["operationName"] for s in spans.values()]
    assert all(s["references"][0]["spanID"] in spans for s in spans.values() if s["references"])
    assert trace["processes"][roots[0]["processID"]]["serviceName"] == "iris-alerts"
    stages = {t["value"] for s in spans.values() for t in s["tags"] if t["key"] == "modeltel.stage"}
    assert {"preprocess", "inference", "postprocess"} <= stages
    assert all(s["duration"] <= roots[0]["duration"] for s in spans.values())
    query = urllib.parse.urlencode({"service": "iris-alerts", "operation": roots[0]["operationName"], "limit": 5})
    with urllib.request.urlopen(f"{stack.collector_urls['listen']}/jaeger/api/traces?{query}") as r:
        assert len(json.load(r)["data"]) == 5
