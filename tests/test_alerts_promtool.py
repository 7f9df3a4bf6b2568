"""The generated rules and Alertmanager config, validated by the real tools (Debian's prometheus and
prometheus-alertmanager packages: promtool, amtool), and every alert and SLO rule unit-tested by
``promtool test rules`` (alerts/tests/: generated cases and hand-written sharp ones)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modeltel.generators.alertmanager import alertmanager_config
from modeltel.generators.prometheus import prometheus_config
from modeltel.generators.yamlout import dump
from tests.binaries import require_binary

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "alerts"
RULES = sorted((ALERTS / "rules").glob("*.yml"))


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_binary("promtool", package="prometheus")
    require_binary("amtool", package="prometheus-alertmanager")


def _run(*cmd: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_promtool_check_rules() -> None:
    out = _run("promtool", "check", "rules", *map(str, RULES)).stdout
    assert out.count("SUCCESS") == len(RULES)


def test_promtool_check_config(tmp_path: Path) -> None:
    _run("promtool", "check", "config", str(ROOT / "collector" / "otelcol" / "prometheus.yml"))
    path = tmp_path / "prometheus.yml"
    path.write_text(prometheus_config(RULES, ["127.0.0.1:9464"], "127.0.0.1:9093", "5s"))
    out = _run("promtool", "check", "config", str(path)).stdout
    assert f"SUCCESS: {len(RULES)} rule files found" in out


@pytest.mark.parametrize("test_file", sorted((ALERTS / "tests").glob("*_test.yml")), ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path) -> None:
    assert "SUCCESS" in _run("promtool", "test", "rules", str(test_file)).stdout


def test_every_alert_rule_has_a_unit_test() -> None:
    tested = set()
    for f in (ALERTS / "tests").glob("*_test.yml"):
        for t in yaml.safe_load(f.read_text())["tests"]:
            tested |= {c["alertname"] for c in t.get("alert_rule_test", [])}
    alerts = {
        r["alert"] for f in RULES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"] if "alert" in r
    }
    assert alerts <= tested, alerts - tested


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: raise HighErrorRate's threshold and they do."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = (ALERTS / "rules" / "modeltel-alerts.yml").read_text()
    assert "> 0.05\n" in text
    (tmp_path / "rules" / "modeltel-alerts.yml").write_text(text.replace("> 0.05\n", "> 0.08\n", 1))
    shutil.copy(ALERTS / "tests" / "alerts_test.yml", tmp_path / "tests")
    proc = subprocess.run(
        ["promtool", "test", "rules", str(tmp_path / "tests" / "alerts_test.yml")], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "HighErrorRate" in proc.stdout + proc.stderr


@pytest.mark.parametrize("local", [False, True], ids=["production", "local-webhook"])
def test_amtool_check_config(tmp_path: Path, local: bool) -> None:
    path = ALERTS / "alertmanager.yml"
    if local:
        path = tmp_path / "alertmanager.yml"
        path.write_text(
            dump(
                alertmanager_config(
                    local_webhook="http://127.0.0.1:5001", templates=str(ALERTS / "templates" / "*.tmpl")
                )
            )
        )
    out = _run("amtool", "check-config", str(path)).stdout
    assert "SUCCESS" in out and "2 inhibit rules" in out


def test_alertmanager_config_holds_no_secret() -> None:
    text = (ALERTS / "alertmanager.yml").read_text()
    assert "api_url:" not in text and "routing_key:" not in text and "service_key:" not in text
    assert "api_url_file:" in text and "routing_key_file:" in text


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=CriticalErrorRate", "model_name=fraud"], "pager,chat-critical"),
        (["severity=critical", "alertname=ErrorBudgetBurn", "slo=availability_slo"], "pager,chat-critical"),
        (["severity=warning", "alertname=HighErrorRate", "model_name=fraud"], "chat-warnings"),
        (["alertname=SomethingUnlabelled"], "chat-warnings"),
    ],
)
def test_amtool_routes(labels: list[str], receivers: str) -> None:
    cfg = f"--config.file={ALERTS / 'alertmanager.yml'}"
    out = _run("amtool", "config", "routes", "test", cfg, f"--verify.receivers={receivers}", *labels).stdout
    assert out.strip() == receivers


def test_amtool_renders_the_notification_templates() -> None:
    text = '{{ template "modeltel.title" . }}|{{ template "modeltel.text" . }}'
    glob = f"--template.glob={ALERTS / 'templates' / '*.tmpl'}"
    out = _run("amtool", "template", "render", glob, f"--template.text={text}").stdout
    assert "Runbook:" in out and "Dashboard:" in out  # amtool's sample alerts carry no annotations
