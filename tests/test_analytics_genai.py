"""The generative checks through the engine and the replay: a TTFT or TPOT shift and an output-length drift
are found on generated streams within a window of their start, a healthy stream raises nothing, a model that
sends no generation data runs none of these tests, and a replayed log's ttft_s/tpot_s/output_tokens columns
feed them."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("scipy")

from modeltel.taxonomy import GENAI_DEGRADATION_CHECKS
from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.settings import Settings
from modeltel_collector.analytics_cli import detect

RATE, SPAN, CHANGE = 10.0, 1500.0, 900.0  # requests a second, seconds generated, when the fault starts


def stream(seed: int, *, ttft: float = 1.0, tpot: float = 1.0, tokens: float = 1.0, warmup: float = 0.0):
    """(time, ttft, tpot, output tokens) of a generative model's requests; from CHANGE on, each is scaled;
    for the first ``warmup`` s (a cold model) the first token and every token take ten times as long."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / RATE, int(RATE * SPAN)))
    times = times[times < SPAN]
    after, cold = times >= CHANGE, np.where(times < warmup, 10.0, 1.0)
    first = rng.lognormal(-1.5, 0.4, len(times)) * np.where(after, ttft, 1.0) * cold
    per_token = rng.lognormal(-4, 0.3, len(times)) * np.where(after, tpot, 1.0) * cold
    out = np.maximum(1, np.round(rng.lognormal(5, 0.5, len(times)) * np.where(after, tokens, 1.0)))
    return times, first, per_token, out


def firing(
    seed: int, *, plain: bool = False, scale: float = 1.0, settings: Settings | None = None, **shift
) -> dict[str, float]:
    """The first firing time of every check the engine raised on ``stream(seed, **shift)`` (windows scaled
    by ``scale``); with ``plain``, each generation comes with a second prediction that is none (the
    server's request span, live)."""
    engine, events = Engine((settings or Settings()).scaled(scale)), []
    for t, first, per_token, out in zip(*stream(seed, **shift), strict=True):
        latency = first + per_token * (out - 1)
        events += engine.observe(t, "chat", "v1", latency, ok=True, ttft=first, tpot=per_token, output_tokens=out)
        if plain:
            events += engine.observe(t, "chat", "v1", latency * 1.2, ok=True)
    engine.traffic_ended(SPAN)  # the stream's end is not the model going quiet
    events += engine.advance(SPAN + 60)
    found: dict[str, float] = {}
    for e in events:
        if e.state == "firing":
            found.setdefault(e.check, e.time)
    return found


@pytest.mark.parametrize(
    ("shift", "check"), [({"ttft": 2.0}, "ttft_shift"), ({"tpot": 2.0}, "tpot_shift"),
                         ({"tokens": 0.5}, "output_length_drift")],
)  # fmt: skip
def test_a_generative_fault_is_found_by_its_check_within_a_window_of_its_start(shift, check):
    found = firing(1, **shift)
    assert check in found and CHANGE <= found[check] <= CHANGE + 60
    others = set(GENAI_DEGRADATION_CHECKS) - {check}
    if check != "output_length_drift":  # fewer tokens also make requests faster: latency may move, TTFT not
        assert not others & set(found)


def test_a_tpot_shift_is_found_when_half_the_predictions_are_not_generations():
    # the requests' window widens until it holds min_samples generations, not min_samples predictions (the
    # demo's windows, 20x shorter: 1.5 s holds 30 predictions, widened to 100 held only 50 generations)
    found = firing(1, plain=True, scale=0.05, tpot=2.0)
    assert "tpot_shift" in found and CHANGE <= found["tpot_shift"] <= CHANGE + 60
    assert not set(firing(1, plain=True, scale=0.05)) & set(GENAI_DEGRADATION_CHECKS)


def test_a_cold_models_slow_first_minute_is_not_learned_so_a_later_tpot_shift_stands_out():
    # 55 s ten times slower is 6 % of the reference at CHANGE: learned, it would set the reference's p95
    # (the effect size's yardstick) and a doubling of TPOT would not reach the warning grade
    assert Settings().warmup_s == 60.0
    found = firing(1, warmup=55.0, tpot=2.0)
    assert "tpot_shift" in found and CHANGE <= found["tpot_shift"] <= CHANGE + 60
    assert "tpot_shift" not in firing(1, warmup=55.0, tpot=2.0, settings=Settings(warmup_s=0.0))
    assert firing(1, warmup=55.0) == {}  # and the warm-up itself raises nothing


@pytest.mark.parametrize("seed", range(3))
def test_a_healthy_generative_model_raises_nothing(seed):
    assert firing(seed) == {}


def test_a_model_without_generation_data_runs_no_generative_test():
    engine, rng = Engine(), np.random.default_rng(0)
    for t in np.arange(0, 900, 0.1):
        engine.observe(t, "fraud", "v1", rng.lognormal(-3, 0.3), ok=True, confidence=0.9)
    w = engine.models[("fraud", "v1")]
    assert w.tests.get("latency_shift", 0) > 10  # the classic checks ran...
    assert not set(w.tests) & set(GENAI_DEGRADATION_CHECKS)  # ...these spent no budget, gave no verdict
    assert not set(w.results) & set(GENAI_DEGRADATION_CHECKS)


def test_replay_reads_the_generative_columns_and_finds_the_drift_at_its_rows(tmp_path, capsys):
    times, first, per_token, out = stream(2, tokens=1.8)
    rows = ["timestamp,model_name,model_version,latency_seconds,status,confidence,ttft_s,tpot_s,output_tokens"]
    for t, a, b, n in zip(times, first, per_token, out, strict=True):
        rows.append(f"{1767225600 + t:.3f},chat,v1,{a + b * (n - 1):.4f},success,,{a:.4f},{b:.5f},{n:.0f}")
    rows.insert(50, "1767225604.900,chat,v1,0.5,success,,soon,0.01,12")  # reported, the rest evaluated
    rows.append(f"{1767225600 + SPAN:.3f},classifier,v1,0.01,success,0.9,,,")  # empty: not a generation
    log = tmp_path / "chat.csv"
    log.write_text("\n".join(rows) + "\n")
    assert detect(["replay", str(log), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    drift = [e for e in report["detections"] if e["check"] == "output_length_drift" and e["state"] == "firing"]
    assert drift and CHANGE <= drift[0]["time"] - 1767225600 <= CHANGE + 60
    assert float(rows[drift[0]["line"] - 1].split(",")[0]) == pytest.approx(drift[0]["time"])
    assert drift[0]["details"]["current_median"] > drift[0]["details"]["reference_median"]
    assert [(b["line"], b["reason"]) for b in report["bad_rows"]] == [(51, "ttft_s 'soon' is not a number")]
