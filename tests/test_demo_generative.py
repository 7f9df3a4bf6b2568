"""``modeltel demo --generative``: the OpenAI-compatible tiny LM behind real Prometheus; a decode slowdown
raises p95 TPOT past the critical threshold (the alert goes pending) and leaves TTFT where it was; the
collector's own detectors grade tpot_shift on the generations (a p-value once they learned the baseline)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from modeltel import taxonomy as tx
from modeltel.cli import demo_generative, main
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


def test_decode_slowdown_puts_the_tpot_alert_pending(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    require_alert_stack()
    with demo_generative.GenerativeStack(tmp_path) as stack:
        stack.load(300, rate=8.0, concurrency=2)
        tpot = demo_generative.p95(tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
        ttft = demo_generative.p95(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
        assert _wait(lambda: (stack.query(tpot) or 0) > 0, 60), "no TPOT reached Prometheus"
        assert stack.query(tpot) < 0.25 and stack.alert_state(demo_generative.ALERT) is None
        detecting = importlib.util.find_spec("scipy") is not None  # the collector's detectors need it
        assert demo_generative.detectors_learned(stack, timeout=150) == detecting  # 100 generations each side
        # (that it fires is tests/test_analytics_genai.py's: here the model's slow first answers join the
        # learned baseline on a loaded machine, and the slowed window takes minutes to outweigh them)
        stack.slow_decode(0.3)
        assert _wait(lambda: stack.alert_state(demo_generative.ALERT) is not None, 90)
        assert stack.query(tpot) > 0.25
        assert stack.query(ttft) < 0.25  # the first token does not wait: TTFT is not what moved


def test_without_transformers_it_says_what_to_install(monkeypatch: pytest.MonkeyPatch, capsys) -> None:

    real = importlib.util.find_spec
    hidden = lambda name, *rest: None if name == "transformers" else real(name, *rest)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    assert main(["demo", "--generative"]) == 2
    assert "pip install 'modeltel[transformers]'" in capsys.readouterr().out
