"""The demo's alert scene says how to get Prometheus and Alertmanager when they are missing."""

from __future__ import annotations

import pytest

from modeltel.cli import demo_alerts


def test_missing_binaries_print_how_to_install(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(demo_alerts, "missing_binaries", lambda: ["prometheus-alertmanager"])
    assert demo_alerts.run_alert_scene(duration=1) == 0
    out = capsys.readouterr().out
    assert "apt-get install prometheus-alertmanager" in out
