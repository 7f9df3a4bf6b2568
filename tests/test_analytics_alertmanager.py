"""The detectors' alerts reach the real Alertmanager (Debian's prometheus-alertmanager) and are resolved there."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from modeltel_collector.analytics.alerting import ALERTNAME, AlertmanagerPoster
from modeltel_collector.analytics.logs import read_log
from modeltel_collector.analytics.replay import replay

LOG = Path(__file__).parent / "data" / "prediction_log.csv"
BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path):
    if BINARY is None:
        pytest.skip("prometheus-alertmanager is not installed")
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: default\n  group_by: [alertname, model_name]\nreceivers:\n  - name: default\n"
    )
    port = _free_port()
    proc = subprocess.Popen(
        [BINARY, f"--config.file={config}", f"--storage.path={tmp_path}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=5) as resp:
        return [a for a in json.load(resp) if a["labels"].get("alertname") == ALERTNAME]


def test_alertmanager_receives_and_resolves_the_detectors_alerts(alertmanager):
    events = replay(read_log(LOG)).events
    firing = [e for e in events if e.state == "firing"]
    poster = AlertmanagerPoster(alertmanager, dashboard_url="http://grafana/d/modeltel")
    assert poster.update(firing, time.time())
    alerts = {a["labels"]["check"]: a for a in _alerts(alertmanager)}
    assert set(alerts) == {"latency_shift", "error_rate_rise"}
    latency = alerts["latency_shift"]
    # the escalation (warning -> critical) replaced the warning alert: one alert per check, the worst severity
    assert latency["labels"] == {
        "alertname": ALERTNAME, "severity": "critical", "model_name": "iris", "model_version": "1",
        "check": "latency_shift",
    }  # fmt: skip
    assert latency["status"]["state"] == "active"
    assert latency["annotations"]["runbook_url"].endswith("model-degradation.md#latency-shift")
    assert latency["annotations"]["dashboard_url"] == "http://grafana/d/modeltel"
    assert "effect size" in latency["annotations"]["description"]

    assert poster.update([e for e in events if e.state == "resolved"], time.time())
    assert poster.open == {}
    assert _alerts(alertmanager) == []  # resolved: gone from the active list


def test_an_unreachable_alertmanager_is_retried_not_raised():
    events = [e for e in replay(read_log(LOG)).events if e.state == "firing"]
    poster = AlertmanagerPoster(f"http://127.0.0.1:{_free_port()}")
    assert not poster.update(events, time.time())
    assert poster.failures == 1 and len(poster.open) == 2  # kept, to be sent on the next call
