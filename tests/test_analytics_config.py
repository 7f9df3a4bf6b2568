"""The detectors' collector options: time scale, runbook and Grafana links, from env/TOML like every option."""

from __future__ import annotations

import pytest

pytest.importorskip("scipy")

from modeltel.generators.alerts import MODELS_UID
from modeltel.taxonomy import Severity
from modeltel_collector import config
from modeltel_collector.analytics.alerting import MODELS_DASHBOARD_UID, AlertmanagerPoster, alert
from modeltel_collector.analytics.detectors import Result, Status
from modeltel_collector.analytics.engine import Event
from modeltel_collector.analytics.settings import Settings
from tests.collector_helpers import running_collector


def test_scaled_settings_shorten_every_window_and_keep_the_sample_floors():
    base, fast = Settings(), Settings().scaled(0.05)
    assert fast.step_s == pytest.approx(0.25) and fast.reference_s == pytest.approx(90.0)
    assert fast.min_reference_s == pytest.approx(15.0) and fast.max_test_gap_s == pytest.approx(180.0)
    assert fast.min_samples == base.min_samples and fast.grades == base.grades


def test_the_time_scale_comes_from_the_environment_and_scales_the_running_detectors(tmp_path):
    cfg = config.load(env={"MODELTEL_COLLECTOR_ANALYTICS_TIME_SCALE": "0.1"})
    assert cfg.analytics_time_scale == 0.1
    with running_collector(otlp_grpc="", analytics_time_scale=0.1) as c:
        live = c.analytics
        assert live.engine.settings.current_s == pytest.approx(3.0)
        assert live.interval_s == pytest.approx(0.2) and live.lag_s == pytest.approx(1.0)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_a_bad_time_scale_is_one_clear_error(value):
    with pytest.raises(ValueError) as e:
        config.load(env={"MODELTEL_COLLECTOR_ANALYTICS_TIME_SCALE": value})
    assert str(e.value).startswith("analytics_time_scale must be a number > 0") and "\n" not in str(e.value)


def _event() -> Event:
    result = Result("latency_shift", Status.DEGRADED, Severity.CRITICAL, 0.001, 4.2, 0.8)
    return Event(100.0, "iris", "v 2", "latency_shift", "firing", Severity.CRITICAL, result)


def test_alerts_link_the_configured_runbooks_and_the_models_dashboard_like_the_rules(tmp_path):
    cfg_file = tmp_path / "collector.toml"
    cfg_file.write_text(
        '[collector]\nrunbook_base_url = "https://rb.example/runbooks/"\ngrafana_url = "http://g:3000/"\n'
    )
    cfg = config.load(str(cfg_file), env={})
    a = alert(_event(), runbook_base=cfg.runbook_base_url, grafana_url=cfg.grafana_url)
    assert a["annotations"]["runbook_url"] == "https://rb.example/runbooks/ModelDegradationDetected.md#latency_shift"
    assert a["annotations"]["dashboard_url"] == (
        "http://g:3000/d/modeltel-models/modeltel-models?var-model_name=iris&var-model_version=v+2"
    )
    assert MODELS_DASHBOARD_UID == MODELS_UID
    assert "dashboard_url" not in alert(_event(), runbook_base="rb", grafana_url="")["annotations"]
    poster = AlertmanagerPoster("http://am", runbook_base=cfg.runbook_base_url, grafana_url=cfg.grafana_url)
    assert poster.grafana_url == "http://g:3000/"


def test_every_check_links_a_section_of_the_generated_runbook():
    from pathlib import Path

    from modeltel_collector.analytics.alerting import runbook_url
    from modeltel_collector.analytics.settings import CHECKS

    runbooks = Path(__file__).parent.parent / "alerts" / "runbooks"
    for check in CHECKS:
        name, anchor = runbook_url("https://rb.example/runbooks", check).rsplit("/", 1)[1].split("#")
        text = (runbooks / name).read_text()
        assert f"\n## {anchor}\n" in text and "First checks" in text.split(f"## {anchor}")[1]
