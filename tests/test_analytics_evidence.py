"""The evidence package: its structure, and each quality gate marked pass or fail with its evidence, against a
running collector, the real Prometheus and the real Alertmanager."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from modeltel_collector.analytics import baseline as bl
from modeltel_collector.analytics.evidence import PACKAGE
from modeltel_collector.analytics.logs import read_log
from modeltel_collector.analytics_cli import evidence
from tests.binaries import require_binary
from tests.collector_helpers import running_collector
from tests.instr.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
LOG = Path(__file__).parent / "data" / "prediction_log.csv"


@pytest.fixture
def prometheus(tmp_path):
    def start(target: str) -> str:
        binary = require_binary("prometheus", package="prometheus")
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: modeltel-collector\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):  # until the first scrape is in
            try:
                with urllib.request.urlopen(base + "/api/v1/targets", timeout=1) as r:
                    targets = json.load(r)["data"]["activeTargets"]
                    if targets and all(t["health"] == "up" for t in targets):
                        return base
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus never scraped the collector")

    procs: list[subprocess.Popen] = []
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_the_package_has_the_specs_structure_and_marks_every_gate(tmp_path, alertmanager, prometheus, capsys):
    baseline = tmp_path / "baseline-metrics.json"
    bl.save(bl.capture(read_log(LOG)), baseline)
    with running_collector(otlp_grpc="") as c:
        prom = prometheus(c.urls["listen"].removeprefix("http://"))
        sources = ["--collector", c.urls["listen"], "--prometheus", prom, "--alertmanager", alertmanager]
        code = evidence(["--out", str(tmp_path / "out"), "--repo", str(ROOT), "--baseline", str(baseline), *sources])
    root = tmp_path / "out" / PACKAGE
    for part in ("configs/prometheus.yml", "configs/alertmanager.yml", "dashboards/dashboard-screenshots",
                 "reports/baseline-metrics.json", "reports/slo-compliance-report.md",
                 "reports/monitoring-coverage.md", "scripts/detectors.py", "runbooks", "gates.md"):  # fmt: skip
        assert (root / part).exists(), part
    gates = {g["check"]: g for g in json.loads((root / "gates.json").read_text())}
    assert len(gates) == 15  # the spec's section 3: five checks in each of three gates
    assert gates["Prometheus successfully scraping all endpoints"]["passed"]
    assert gates["Test alerts triggered successfully"]["passed"]
    assert gates["Alertmanager routing configured"]["passed"]
    assert gates["Degradation detection thresholds set"]["passed"]
    # the committed log covers 20 minutes, not 7 days; no model has sent metrics; nobody set up on-call
    assert not gates["Baseline metrics collected for 7+ days"]["passed"]
    assert "iris 1: 0.0 d" in gates["Baseline metrics collected for 7+ days"]["evidence"]
    assert not gates["All core metrics being collected"]["passed"]
    assert "model_prediction_latency_seconds" in gates["All core metrics being collected"]["evidence"]
    assert not gates["On-call rotation configured"]["passed"]
    assert code == 1  # not every gate passes
    out = capsys.readouterr().out
    assert "PASS  Gate 1: Monitoring Infrastructure / Prometheus successfully scraping all endpoints" in out
    assert bl.load(root / "reports" / "baseline-metrics.json") == bl.load(baseline)
    assert "| PASS |" in (root / "gates.md").read_text() and "| FAIL |" in (root / "gates.md").read_text()
    assert "modeltel-collector" in (root / "reports" / "monitoring-coverage.md").read_text()


def test_without_sources_the_gates_fail_and_say_why(tmp_path, capsys):
    assert evidence(["--out", str(tmp_path), "--repo", str(ROOT)]) == 1
    gates = {g["check"]: g for g in json.loads((tmp_path / PACKAGE / "gates.json").read_text())}
    assert gates["Prometheus successfully scraping all endpoints"]["evidence"] == "no --prometheus given"
    assert gates["Baseline metrics collected for 7+ days"]["evidence"] == "no --baseline given"
    assert "Not measured" in (tmp_path / PACKAGE / "reports" / "slo-compliance-report.md").read_text()
