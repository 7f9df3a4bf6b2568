"""Run every panel query of the generated dashboards against a Prometheus, as Grafana would.

Grafana sends each target to ``/api/v1/query_range`` (or ``/api/v1/query`` for instant targets) with its
template variables and ``$__rate_interval`` substituted; this does the same, and times each request. The
panel-query test (tests/test_dashboards_e2e.py) and ``benchmarks/dashboard_queries.py`` both use it; it lives
with the tests, not in the package, because no command of modeltel runs it.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from modeltel.generators.dashboards import panel_targets, substitute

__all__ = ["PanelResult", "load_boards", "run_panel_queries"]


@dataclass(frozen=True)
class PanelResult:
    dashboard: str
    panel: str
    expr: str  # as sent, variables substituted
    seconds: float
    series: int
    error: str  # empty when Prometheus answered "success"


def load_boards(directory: Path) -> dict[str, dict]:
    """The dashboard JSON under ``directory``, by uid."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def _get(url: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    return body, time.perf_counter() - t0


def run_panel_queries(
    prometheus_url: str,
    boards: dict[str, dict],
    *,
    start: float,
    end: float,
    rate_interval: str,
    values: dict[str, str] | None = None,
) -> list[PanelResult]:
    """Every target of every panel over ``[start, end]``, at Grafana's default ~1000 points per panel."""
    step = max(1.0, round((end - start) / 1000, 3))
    results = []
    for uid, board in boards.items():
        for title, target in panel_targets(board):
            expr = substitute(target["expr"], rate_interval, values)
            if target.get("instant"):
                params, api = {"query": expr, "time": end}, "query"
            else:
                params, api = {"query": expr, "start": start, "end": end, "step": step}, "query_range"
            body, seconds = _get(f"{prometheus_url}/api/v1/{api}?{urllib.parse.urlencode(params)}")
            error = "" if body.get("status") == "success" else f"{body.get('errorType')}: {body.get('error')}"
            series = len(body.get("data", {}).get("result", [])) if not error else 0
            results.append(PanelResult(uid, title, expr, seconds, series, error))
    return results
