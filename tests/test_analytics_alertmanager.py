"""The detectors' alerts reach the real Alertmanager (Debian's prometheus-alertmanager) and are resolved there."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from modeltel_collector.analytics.alerting import ALERTNAME, AlertmanagerPoster
from modeltel_collector.analytics.logs import read_log
from modeltel_collector.analytics.replay import replay
from tests.instr.servers import free_port

LOG = Path(__file__).parent / "data" / "prediction_log.csv"


def _alerts(url: str) -> list[dict]:
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=5) as resp:
        return [a for a in json.load(resp) if a["labels"].get("alertname") == ALERTNAME]


def test_alertmanager_receives_and_resolves_the_detectors_alerts(alertmanager):
    events = replay(read_log(LOG)).events
    firing = [e for e in events if e.state == "firing"]
    poster = AlertmanagerPoster(alertmanager, grafana_url="http://grafana")
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
    assert latency["annotations"]["runbook_url"].endswith("/ModelDegradationDetected.md#latency_shift")
    assert latency["annotations"]["dashboard_url"] == (
        "http://grafana/d/modeltel-models/modeltel-models?var-model_name=iris&var-model_version=1"
    )
    assert "effect size" in latency["annotations"]["description"]

    assert poster.update([e for e in events if e.state == "resolved"], time.time())
    assert poster.open == {}
    assert _alerts(alertmanager) == []  # resolved: gone from the active list


def test_an_unreachable_alertmanager_is_retried_not_raised():
    events = [e for e in replay(read_log(LOG)).events if e.state == "firing"]
    poster = AlertmanagerPoster(f"http://127.0.0.1:{free_port()}")
    assert not poster.update(events, time.time())
    assert poster.failures == 1 and len(poster.open) == 2  # kept, to be sent on the next call
