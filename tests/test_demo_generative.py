"""``modeltel demo --generative``: the OpenAI-compatible tiny LM behind real Prometheus; a decode slowdown
raises p95 TPOT past the critical threshold (the alert goes pending) and leaves TTFT where it was; the
collector's own detectors, which do not learn the cold model's first seconds, fire tpot_shift after the
slowdown and not before it."""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.request
from pathlib import Path

import pytest

from modeltel import taxonomy as tx
from modeltel.cli import demo_generative, main
from modeltel.cli.loopback import samples, scrape
from tests.binaries import require_alert_stack


def test_missing_binaries_print_how_to_install(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(demo_generative, "missing_binaries", lambda: ["prometheus"])
    assert main(["demo", "--generative", "--duration", "1"]) == 0
    assert "apt-get install prometheus" in capsys.readouterr().out


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(1)
    return False


def _tpot_detections(stack: demo_generative.GenerativeStack) -> list[dict]:
    """The collector's latest tpot_shift event (firing or resolved), if it ever had one."""
    url = (stack.collector_urls or {})["listen"] + "/api/v1/console/alerts"
    with urllib.request.urlopen(url, timeout=10) as response:
        detections = json.load(response)["detections"] or []
    return [e for e in detections if e["check"] == demo_generative.CHECK]


def test_decode_slowdown_puts_the_tpot_alert_pending_and_fires_the_detector_after_it(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    require_alert_stack()
    with demo_generative.GenerativeStack(tmp_path) as stack:
        stack.load(900, rate=8.0, concurrency=2)
        tpot = demo_generative.p95(tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
        ttft = demo_generative.p95(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
        assert _wait(lambda: (stack.query(tpot) or 0) > 0, 60), "no TPOT reached Prometheus"
        assert stack.query(tpot) < 0.25 and stack.alert_state(demo_generative.ALERT) is None
        detecting = importlib.util.find_spec("scipy") is not None  # the collector's detectors need it
        assert demo_generative.detectors_learned(stack, timeout=150) == detecting  # 100 generations each side
        if detecting:
            assert _tpot_detections(stack) == []  # not before the slowdown
        wall = time.time()
        stack.slow_decode(0.3)
        assert _wait(lambda: stack.alert_state(demo_generative.ALERT) is not None, 90)
        assert stack.query(tpot) > 0.25
        assert stack.query(ttft) < 0.25  # the first token does not wait: TTFT is not what moved
        if detecting:  # the cold model's first answers are not in the reference, so the slowdown stands out
            listen = (stack.collector_urls or {})["listen"]
            fires = lambda: demo_generative.detection(scrape(listen)) is not None  # noqa: E731
            assert _wait(fires, 240), "tpot_shift did not fire within 4 minutes of the slowdown"
            fired = _tpot_detections(stack)
            assert [e["state"] for e in fired] == ["firing"] and fired[0]["time"] >= wall  # on slowed data
            # the server's spans come within the collector's scaled lag: few predictions are dropped as late
            # (with the SDK's 5-s span batches most were, and the detector saw a few generations in ten)
            fams = scrape(listen)
            late = [
                s.value
                for s in samples(fams, "modeltel_collector_dropped", "_total")
                if s.labels["what"] == "analytics_late"
            ]
            generations = samples(fams, tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN.prometheus_name, "_count")
            assert sum(late) < 0.5 * sum(s.value for s in generations)  # two predictions a generation


def test_without_transformers_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch, capsys) -> None:

    real = importlib.util.find_spec
    hidden = lambda name, *rest: None if name == "transformers" else real(name, *rest)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    assert main(["demo", "--generative"]) == 2
    assert "pip install 'modeltel[transformers]'" in capsys.readouterr().out
