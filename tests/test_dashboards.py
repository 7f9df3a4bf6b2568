"""The generated dashboards: committed equal to the generator, loadable through Grafana's own types, and
naming only metrics that modeltel produces."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("grafana_foundation_sdk")

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.models import dashboard as gm
from grafana_foundation_sdk.models import prometheus as gmp

from modeltel import taxonomy as tx
from modeltel.generators.dashboards import panel_queries, render_dashboards, substitute
from modeltel.generators.sloconfig import load_slo_config

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
CONFIG = ROOT / "alerts" / "slo-config.yaml"
BOARDS = sorted(DASHBOARDS.glob("*.json"))


def _rendered() -> dict[str, str]:
    return render_dashboards(load_slo_config(CONFIG))


def test_committed_files_equal_the_generator() -> None:
    rendered = _rendered()
    committed = {str(p.relative_to(DASHBOARDS)) for p in DASHBOARDS.rglob("*") if p.is_file()}
    assert committed == set(rendered), "run: modeltel dashboards generate"
    for rel, text in rendered.items():
        assert (DASHBOARDS / rel).read_text() == text, f"{rel} is stale: run modeltel dashboards generate"


def test_check_flag_reports_a_stale_file(tmp_path: Path) -> None:
    env_cmd = [sys.executable, "-m", "modeltel.cli", "dashboards", "generate", "--dir", str(tmp_path), "--config"]
    env = {"PYTHONPATH": f"{ROOT / 'sdk'}:{ROOT / 'collector'}", "PATH": "/usr/bin:/bin"}
    assert subprocess.run([*env_cmd, str(CONFIG)], env=env, capture_output=True).returncode == 0
    (tmp_path / "modeltel-slo.json").write_text("{}")
    res = subprocess.run([*env_cmd, str(CONFIG), "--check"], env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "modeltel-slo.json is out of date" in res.stderr


@pytest.mark.parametrize("path", BOARDS, ids=lambda p: p.stem)
def test_dashboard_loads_back_through_the_sdk_types(path: Path) -> None:
    plugins.register_default_plugins()
    raw = json.loads(path.read_text())
    board = gm.Dashboard.from_json(raw)
    assert board.uid == path.stem and board.title
    targets = [t for p in board.panels or [] if isinstance(p, gm.Panel) for t in p.targets or []]
    assert targets and all(isinstance(t, gmp.Dataquery) for t in targets)
    names = {v.name for v in board.templating.list_val}
    assert {"datasource", "model_name", "model_version", "instance"} <= names
    ids = [p["id"] for p in raw["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def _allowed_metrics() -> set[str]:
    names = {"ALERTS"}
    for inst in (*tx.INSTRUMENTS, *tx.GPU_INSTRUMENTS, *tx.GENAI_INSTRUMENTS):
        base = inst.prometheus_series
        names |= {base, f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    for rules in (ROOT / "alerts" / "rules").glob("*.yml"):
        for group in yaml.safe_load(rules.read_text())["groups"]:
            names |= {r["record"] for r in group["rules"] if "record" in r}
    return names


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: identifiers that are not functions, keywords or label lists."""
    s = re.sub(r'"[^"]*"', "", expr)
    s = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", s)
    s = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", s)
    tokens = re.findall(r"([A-Za-z_:][\w:]*)\s*(\(?)", s)
    return {t for t, call in tokens if not call and t not in {"and", "or", "unless", "bool"}}


def test_every_panel_names_a_metric_modeltel_produces() -> None:
    allowed = _allowed_metrics()
    seen = set()
    for path in BOARDS:
        for title, expr in panel_queries(json.loads(path.read_text())):
            names = metric_names(substitute(expr, "1m"))
            assert names, (path.name, title, expr)
            assert names <= allowed, (path.name, title, names - allowed)
            seen |= names
    assert tx.PREDICTION_LATENCY.prometheus_name + "_bucket" in seen and "slo:error_budget:ratio" in seen


def test_metric_name_check_can_fail() -> None:
    assert metric_names('rate(model_latency_seconds_bucket{a="b"}[1m]) / on (slo) group_left () x:y') == {
        "model_latency_seconds_bucket", "x:y"
    }  # fmt: skip


def test_shared_rules_hold_on_every_dashboard() -> None:
    for path in BOARDS:
        raw = json.loads(path.read_text())
        queries = panel_queries(raw)
        assert all("$__rate_interval" in e for _, e in queries if "rate(" in e or "increase(" in e), path.name
        uids = {link["url"].split("/")[2] for link in raw["links"]}
        assert uids == {p.stem for p in BOARDS} - {path.stem}, "links to the other dashboards"
        runbooks = [lk for p in raw["panels"] for lk in p.get("links") or [] if lk["url"].endswith(".md")]
        assert runbooks, f"{path.name} has no runbook links"
        for panel in raw["panels"]:
            for t in panel.get("targets") or []:  # time quantiles (latency, TTFT, TPOT) carry the exemplars
                assert t["exemplar"] == ("_seconds_bucket" in t["expr"]), (panel["title"], t["expr"])


def _steps(panel: dict) -> list[dict]:
    return panel.get("fieldConfig", {}).get("defaults", {}).get("thresholds", {}).get("steps") or []  # rows: none


def _spec(alert: str) -> tx.AlertSpec:
    (spec,) = tx.ALERTS_BY_NAME[alert]
    return spec


def test_thresholds_come_from_the_taxonomy() -> None:
    raw = json.loads((DASHBOARDS / "modeltel-models.json").read_text())
    panels = {p["title"]: p for p in raw["panels"]}
    accuracy_slo = next(s for s in tx.SLOS if s.name == "accuracy_slo")
    steps = [s["value"] for s in _steps(panels["Online accuracy"])]
    assert steps == [None, _spec("AccuracyDegradation").threshold, accuracy_slo.threshold]
    steps = [s["value"] for s in _steps(panels["Prediction latency p50 / p95 / p99"])]
    pages = [_spec("HighPredictionLatency").threshold, _spec("CriticalPredictionLatency").threshold]
    assert steps == [None, tx.SLO_LATENCY_THRESHOLD_SECONDS, *pages]
    steps = [s["value"] for s in _steps(panels["Time to first token p50 / p95 / p99"])]
    pages = [_spec("HighTimeToFirstToken").threshold, _spec("CriticalTimeToFirstToken").threshold]
    assert steps == [None, tx.SLO_TTFT_THRESHOLD_SECONDS, *pages]
    steps = [s["value"] for s in _steps(panels["Time per output token p50 / p95"])]
    assert steps == [None, _spec("HighTimePerOutputToken").threshold, _spec("CriticalTimePerOutputToken").threshold]


def test_the_generative_row_shows_streams_by_model() -> None:
    raw = json.loads((DASHBOARDS / "modeltel-models.json").read_text())
    titles = [p["title"] for p in raw["panels"]]
    row = titles.index("Generative (token streams)")
    assert titles[row + 1 : row + 6] == [
        "Time to first token p50 / p95 / p99", "Time per output token p50 / p95", "Output tokens / s",
        "Tokens per request (input, output)", "Generative request duration p95",
    ]  # fmt: skip
    queries = dict(panel_queries(raw))
    for title in titles[row + 1 : row + 6]:
        expr = queries[title]
        assert "model_name, model_version" in expr and 'model_name=~"$model_name"' in expr, title
    assert 'gen_ai_token_type="output"' in queries["Output tokens / s"]


# What a line's colour says on every panel: the severity of the alert that fires beyond it, or an SLO missed.
_SEVERITY_COLOUR = {"warning": "orange", "critical": "red"}
_SLO_COLOUR, _OK_COLOUR = "yellow", "green"


def _drawn(panel: dict) -> list[tuple[float, str]]:
    """(threshold, colour of the side beyond it) for each line a panel draws, whichever way is worse."""
    steps = _steps(panel)
    if len(steps) < 2:
        return []
    if steps[0]["color"] == _OK_COLOUR:  # higher is worse: each colour holds from its value up
        return [(s["value"], s["color"]) for s in steps[1:]]
    assert steps[-1]["color"] == _OK_COLOUR, (panel["title"], steps)  # lower is worse: green at the top
    return [(above["value"], below["color"]) for below, above in itertools.pairwise(steps)]


def _used_by_what_the_panel_links_to(panel: dict, config) -> set[tuple[float, str]]:
    """(threshold, colour) of the alerts whose runbooks the panel links to, and of the SLOs."""
    linked = {lk["url"].rsplit("/", 1)[-1].removesuffix(".md") for lk in panel.get("links") or []}
    used = {(s.threshold, _SEVERITY_COLOUR[s.severity_label]) for s in tx.ALERTS if s.alert in linked}
    if "ErrorBudgetBurn" in linked:  # burn-rate factors, and a budget overspent (the objective missed)
        used |= {(w.factor, _SEVERITY_COLOUR[w.severity.label]) for w in config.windows} | {(0.0, _SLO_COLOUR)}
    used |= {(s.threshold, _SLO_COLOUR) for s in config.slos if s.kind == "threshold"}
    # a ratio SLO over a histogram's bucket (latency, TTFT): its le is the threshold its objective counts
    used |= {(float(le), _SLO_COLOUR) for s in config.slos for le in re.findall(r'le="([^"]+)"', s.good)}
    return used


def test_every_threshold_drawn_is_one_an_alert_or_an_slo_uses_in_its_severity_colour() -> None:
    config = load_slo_config(CONFIG)
    drawn_somewhere, strays = 0, []
    for path in BOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            drawn = _drawn(panel)
            drawn_somewhere += len(drawn)
            stray = set(drawn) - _used_by_what_the_panel_links_to(panel, config)
            strays += [f"{path.name} {panel['title']!r}: {sorted(stray)}"] if stray else []
    assert strays == [], "lines (value, colour) no alert the panel links to, nor an SLO, uses"
    assert drawn_somewhere >= 10


def test_every_alert_links_to_a_generated_dashboard_with_the_variables_it_sets() -> None:
    boards = {}
    for path in BOARDS:
        doc = json.loads(path.read_text())
        boards[doc["uid"]] = {v["name"] for v in doc["templating"]["list"]}
    rules = [r for f in sorted((ROOT / "alerts" / "rules").glob("*.yml"))
             for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"] if "alert" in r]  # fmt: skip
    assert rules
    for rule in rules:
        url = rule["annotations"]["dashboard_url"]
        uid = re.search(r"/d/([^/]+)/", url)[1]
        assert uid in boards, (rule["alert"], url)
        assert set(re.findall(r"var-(\w+)=", url)) <= boards[uid], (rule["alert"], url)
