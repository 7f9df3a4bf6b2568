"""The generated alert files: committed equal to the generator, built from the taxonomy, shaped right."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modeltel import taxonomy as tx
from modeltel.generators import render_alerts, stale_files
from modeltel.generators.slo import burn_windows, sli_windows
from modeltel.generators.sloconfig import SLOConfigError, default_slo_config, load_slo_config
from tests.binaries import require_binary

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "alerts"
SEED_ALERTS = {  # the seed's nine: name -> (severity, threshold, for)
    "HighPredictionLatency": ("warning", 0.2, "5m"),
    "CriticalPredictionLatency": ("critical", 0.5, "2m"),
    "LowThroughput": ("warning", 50, "10m"),
    "HighErrorRate": ("warning", 0.05, "5m"),
    "CriticalErrorRate": ("critical", 0.10, "2m"),
    "AccuracyDegradation": ("warning", 0.85, "15m"),
    "HighCPUUsage": ("warning", 85, "10m"),
    "HighMemoryUsage": ("critical", 90, "5m"),
    "ModelServerDown": ("critical", 0, "1m"),
}


def _rules(name: str) -> list[dict]:
    doc = yaml.safe_load((ALERTS / "rules" / name).read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_committed_files_equal_the_generator_output() -> None:
    assert stale_files(ALERTS) == [], "run `modeltel alerts generate` and commit alerts/"


def test_slo_config_declares_the_taxonomy_slos_and_windows() -> None:
    config = load_slo_config(ALERTS / "slo-config.yaml")
    by_name = {s.name: s for s in config.slos}
    for slo in tx.SLOS:
        assert by_name[slo.name] == slo
    assert config.windows == tx.BURN_RATE_WINDOWS
    assert config.windows_period == tx.BURN_RATE_PERIOD


def test_an_installed_package_renders_the_committed_alert_files_without_a_checkout() -> None:
    # The demo's alert scene outside a checkout renders from default_slo_config(): the same files.
    committed = render_alerts(load_slo_config(ALERTS / "slo-config.yaml"))
    assert render_alerts(default_slo_config()) == committed


def test_seed_alerts_keep_names_thresholds_and_for() -> None:
    specs = {s.alert: s for s in tx.ALERTS}
    for name, (severity, threshold, for_) in SEED_ALERTS.items():
        assert (specs[name].severity_label, specs[name].threshold, specs[name].for_) == (severity, threshold, for_)
    rules = {r["alert"]: r for r in _rules("modeltel-alerts.yml")}
    assert set(SEED_ALERTS) <= set(rules)


def test_every_alert_has_labels_annotations_and_a_runbook() -> None:
    for rule in _rules("modeltel-alerts.yml") + [r for r in _rules("modeltel-slo.yml") if "alert" in r]:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url", "dashboard_url"}
        runbook = ALERTS / "runbooks" / f"{rule['alert']}.md"
        assert runbook.exists() and rule["annotations"]["runbook_url"].endswith(f"/{runbook.name}")
        assert "## First checks" in runbook.read_text() and "## Mitigation" in runbook.read_text()
        assert "{{ $value }}" not in rule["annotations"]["description"], "values go through a humanize function"
        if "model_name" in rule["annotations"]["summary"]:
            assert "model_name, model_version" in rule["expr"] or "slo:sli_error" in rule["expr"], rule["alert"]


def test_generative_models_page_on_p95_ttft_and_tpot_and_have_a_ttft_slo() -> None:
    rules = {(r["alert"], r["labels"]["severity"]): r for r in _rules("modeltel-alerts.yml")}
    for alert, severity, metric, threshold in (
        ("HighTimeToFirstToken", "warning", "gen_ai_server_time_to_first_token_seconds", "2"),
        ("CriticalTimeToFirstToken", "critical", "gen_ai_server_time_to_first_token_seconds", "5"),
        ("HighTimePerOutputToken", "warning", "gen_ai_server_time_per_output_token_seconds", "0.1"),
        ("CriticalTimePerOutputToken", "critical", "gen_ai_server_time_per_output_token_seconds", "0.25"),
    ):
        by_model = f"sum by (model_name, model_version, le) (rate({metric}_bucket[5m]))"
        assert rules[(alert, severity)]["expr"] == f"histogram_quantile(0.95, {by_model}) > {threshold}"
    slo_rules = [r for r in _rules("modeltel-slo.yml") if r.get("labels", {}).get("slo") == "ttft_slo"]
    assert sum("alert" in r for r in slo_rules) == 4
    recorded = [r["expr"] for r in slo_rules if r.get("record") == "slo:sli_error:ratio_rate30d"]
    total = "sum by (model_name, model_version) (rate(gen_ai_server_time_to_first_token_seconds_count[30d]))"
    good = 'sum by (model_name, model_version) (rate(gen_ai_server_time_to_first_token_seconds_bucket{le="1"}[30d]))'
    assert recorded == [f"1 - ({good} or 0 * {total}) / ({total} > 0)"]


def test_the_detector_runbook_has_a_section_per_check_generative_ones_included() -> None:
    text = (ALERTS / "runbooks" / f"{tx.DEGRADATION_ALERT}.md").read_text()
    for check in (*tx.DEGRADATION_CHECKS, "ttft_shift", "tpot_shift", "output_length_drift"):
        assert f"\n## {check}\n" in text, check


def test_error_rate_is_errors_over_all_predictions_of_the_model() -> None:
    rule = next(r for r in _rules("modeltel-alerts.yml") if r["alert"] == "HighErrorRate")
    assert 'model_predictions_total{status="error"}' in rule["expr"]
    assert "sum by (model_name, model_version) (rate(model_predictions_total[5m])) > 0" in rule["expr"]


def test_burn_rate_windows_are_the_sre_workbook_table_and_scale_with_the_period() -> None:
    config = load_slo_config(ALERTS / "slo-config.yaml")
    month = next(s for s in config.slos if s.window == "30d")
    rows = burn_windows(month, config.windows, config.windows_period)
    assert [(r.factor, r.long, r.short) for r in rows] == [
        (14.4, "1h", "5m"),
        (6, "6h", "30m"),
        (3, "1d", "2h"),
        (1, "3d", "6h"),
    ]
    assert sli_windows(rows, "30d") == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    week = tx.SLO("w", "w", 0.9, "7d", good="g", total="t")
    assert [(r.long, r.short) for r in burn_windows(week, config.windows, "30d")] == [
        ("14m", "1m"), ("1h24m", "7m"), ("5h36m", "28m"), ("16h48m", "1h24m"),
    ]  # fmt: skip


def test_every_burn_rate_alert_names_its_slo() -> None:
    names = {s.name for s in load_slo_config(ALERTS / "slo-config.yaml").slos}
    alerts = [r for r in _rules("modeltel-slo.yml") if "alert" in r]
    assert len(alerts) == 4 * len(names)
    assert {r["labels"]["slo"] for r in alerts} == names


OPENSLO = """\
apiVersion: openslo/v1
kind: SLI
metadata: {name: checkout-errors}
spec:
  ratioMetric:
    counter: true
    bad: {metricSource: {type: Prometheus, spec: {query: 'model_predictions_total{status="error"}'}}}
    total: {metricSource: {type: Prometheus, spec: {query: model_predictions_total}}}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout_availability}
spec:
  description: Checkout model answers
  service: checkout
  indicatorRef: checkout-errors
  timeWindow: [{duration: 28d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{displayName: good, target: 0.995}]
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout_confidence}
spec:
  service: checkout
  indicator:
    metadata: {name: confidence}
    spec:
      thresholdMetric: {metricSource: {type: Prometheus, spec: {query: model_online_accuracy}}}
  timeWindow: [{duration: 7d, isRolling: true}]
  budgetingMethod: Timeslices
  objectives: [{target: 0.9, op: gte, value: 0.8}]
"""


def _config_with(tmp_path: Path, extra: str) -> Path:
    text = (ALERTS / "slo-config.yaml").read_text().replace("openslo: []", extra)
    (tmp_path / "slo-config.yaml").write_text(text)
    return tmp_path / "slo-config.yaml"


def test_openslo_ratio_and_threshold_specs_compile_to_rules(tmp_path: Path) -> None:
    (tmp_path / "checkout.yaml").write_text(OPENSLO)
    config = load_slo_config(_config_with(tmp_path, "openslo: [checkout.yaml]"))
    by_name = {s.name: s for s in config.slos}
    ratio, threshold = by_name["checkout_availability"], by_name["checkout_confidence"]
    assert (ratio.objective, ratio.window, ratio.bad, ratio.total) == (
        0.995, "28d", 'model_predictions_total{status="error"}', "model_predictions_total",
    )  # fmt: skip
    assert (threshold.kind, threshold.metric, threshold.op, threshold.threshold) == (
        "threshold", "model_online_accuracy", "gte", 0.8,
    )  # fmt: skip
    files = render_alerts(config)
    rules = yaml.safe_load(files["rules/modeltel-slo.yml"])
    checkout = next(g for g in rules["groups"] if g["name"] == "slo-checkout_availability")
    assert {r.get("record") for r in checkout["rules"]} >= {"slo:sli_error:ratio_rate28d"}
    promtool = require_binary("promtool", package="prometheus")  # the rendered rules load in Prometheus
    (tmp_path / "slo.yml").write_text(files["rules/modeltel-slo.yml"])
    subprocess.run([promtool, "check", "rules", str(tmp_path / "slo.yml")], check=True, capture_output=True)


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ("target: 0.999", r"availability_slo: target must be in \(0, 1\)"),
        ("window: 7d", "accuracy_slo: not a duration"),
        ("op: gte", "threshold op must be one of"),
    ],
)
def test_config_mistakes_are_one_line_naming_the_slo(tmp_path: Path, replace: str, message: str) -> None:
    bad = {"target: 0.999": "target: 99.9", "window: 7d": "window: 7 days", "op: gte": "op: '>='"}[replace]
    path = tmp_path / "slo-config.yaml"
    path.write_text((ALERTS / "slo-config.yaml").read_text().replace(replace, bad, 1))
    with pytest.raises(SLOConfigError, match=message) as err:
        load_slo_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_cli_generate_and_check(tmp_path: Path) -> None:
    shutil.copy(ALERTS / "slo-config.yaml", tmp_path / "slo-config.yaml")
    env_cmd = [sys.executable, "-m", "modeltel.cli", "alerts", "generate", "--dir", str(tmp_path)]
    assert subprocess.run([*env_cmd, "--check"], capture_output=True).returncode == 1  # nothing there yet
    subprocess.run(env_cmd, check=True, capture_output=True)
    assert subprocess.run([*env_cmd, "--check"], capture_output=True).returncode == 0
    rules = tmp_path / "rules" / "modeltel-alerts.yml"
    rules.write_text(rules.read_text().replace("for: 5m", "for: 6m", 1))
    out = subprocess.run([*env_cmd, "--check"], capture_output=True, text=True)
    assert out.returncode == 1 and "modeltel-alerts.yml is out of date" in out.stderr
