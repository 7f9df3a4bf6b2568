"""End to end, on loopback: real Prometheus and Alertmanager with the generated rules and route tree, a
modeltel collector, the iris example server under paced load. A latency regression and then an error
burst are injected into the server; the right notifications must reach the right webhook receivers, with
their runbook links, and the critical page must inhibit the warning of the same SLO and model."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from modeltel.cli.alertstack import AlertStack, Notification
from modeltel.cli.slo_report import collect
from modeltel.generators.sloconfig import load_slo_config
from tests.binaries import require_alert_stack

ALERTS = Path(__file__).resolve().parents[1] / "alerts"


@pytest.fixture(autouse=True)
def _stack_binaries() -> None:
    require_alert_stack()


def _burn(slo: str, severity: str):
    def match(note: Notification) -> bool:
        return any(a["labels"].get("slo") == slo and a["labels"]["severity"] == severity for a in note.alerts)

    return match


def _check(note: Notification | None, receivers: set[str], what: str) -> None:
    assert note is not None, f"no notification for {what}"
    assert note.receiver in receivers, (what, note.receiver)
    for alert in note.alerts:
        assert alert["annotations"]["runbook_url"].endswith("/ErrorBudgetBurn.md")
        assert alert["labels"]["model_name"] == "iris-classifier"
        assert alert["annotations"]["description"] and "{{" not in alert["annotations"]["description"]


def test_faults_reach_the_right_receivers(tmp_path: Path) -> None:
    with AlertStack(tmp_path, interval="1s") as stack:
        stack.load(120, rate=40)  # outlasts the waits below; stops with the stack
        time.sleep(6)  # healthy traffic first: nothing may fire
        assert stack.wait_for(lambda n: True, 0) is None

        t = stack.inject(latency_s=0.3)  # every request now takes > 100 ms: the latency SLO burns
        page = stack.wait_for(_burn("prediction_latency_slo", "critical"), 60, t)
        _check(page, {"pager", "chat-critical"}, "latency page")

        t = stack.inject(error_fraction=0.5)  # half the predictions fail: availability pages
        pager = stack.wait_for(lambda n: n.receiver == "pager" and _burn("availability_slo", "critical")(n), 30, t)
        chat = stack.wait_for(
            lambda n: n.receiver == "chat-critical" and _burn("availability_slo", "critical")(n), 5, t
        )
        _check(pager, {"pager"}, "availability page")
        _check(chat, {"chat-critical"}, "availability chat")
        assert all(a["labels"]["severity"] == "critical" for a in pager.alerts)

        # the availability warnings (3x, 1x) are inhibited by its page, for this model only
        query = urllib.parse.urlencode([("filter", 'slo="availability_slo"'), ("filter", 'severity="warning"')])
        with urllib.request.urlopen(f"{stack.alertmanager_url}/api/v2/alerts?{query}", timeout=10) as r:
            warnings = json.load(r)
        assert warnings and all(a["status"]["inhibitedBy"] for a in warnings)

        # every notification went where its severity routes: critical to the pager and chat, warning to chat
        routes = {"critical": {"pager", "chat-critical"}, "warning": {"chat-warnings"}}
        for note in stack.webhook.notifications:
            assert all(note.receiver in routes[a["labels"]["severity"]] for a in note.alerts), note

        rows = {r.slo: r for r in collect(stack.prometheus_url, load_slo_config(ALERTS / "slo-config.yaml")).rows}
        assert rows["availability_slo"].model == ("iris-classifier", "1.0.0")
        assert rows["availability_slo"].budget.status == "exhausted"
        assert rows["prediction_latency_slo"].budget.burn_rates["5m"] > 1
