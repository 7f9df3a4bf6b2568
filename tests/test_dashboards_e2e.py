"""Every panel query of the committed dashboards, its variables substituted as Grafana does, runs against a
real Prometheus (Debian's) that scraped a modeltel collector while the iris example server served traffic
(with an error burst, so error panels have data); the core panels return series for the selected model."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("grafana_foundation_sdk")

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
    },
    "modeltel-slo": {"SLI against target (over each SLO's window)", "Burn rate per window", "Error budget remaining"},
    "modeltel-gpu": {"Host cpu", "Host memory"},
}  # fmt: skip
WAIT_S = 120  # bound on each wait for scraped data (Prometheus and the server share a loaded machine)


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
        trace_id = exemplar["labels"]["trace_id"]
        with urllib.request.urlopen(f"{stack.collector_urls['listen']}/jaeger/api/traces/{trace_id}") as r:
            (trace,) = json.load(r)["data"]
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
