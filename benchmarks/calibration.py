"""Chance alarms a day of a healthy model, by traffic level: the false-alarm budget holds whatever the traffic.

A healthy calibrated model (confidence ~ Beta(8, 2), right with probability its confidence, latency
lognormal, 0.5 % errors) is replayed against a fixed baseline drawn from the same model, at 1 prediction
an hour, 1 a minute, 10 a second and 1,000 a second (at most 10 labels a second: the rest unlabelled), over
several seeds. Two budgets: the default (0.01 a day, with the effect-size floors), where chance alarms
should be all but absent, and an inflated one (20 a day, no effect-size floor, CUSUM floor 10 labels), large
enough that chance alarms happen and can be counted against it. Prints the episodes a day (any check)
with a 95 % upper bound, and the window tests run a day per check.

    python benchmarks/calibration.py [--seeds-scale 1.0]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from modeltel_collector.analytics.accuracy import calibration
from modeltel_collector.analytics.detectors import confidence_counts
from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.reference import Reference
from modeltel_collector.analytics.settings import CHECKS, Grade, Settings

sys.path.insert(0, str(Path(__file__).parent))
from realistic import episodes

LEVELS = {  # name -> (predictions a second, days simulated per seed, seeds)
    "1 an hour": (1 / 3600, 240.0, 12),
    "1 a minute": (1 / 60, 30.0, 8),
    "10 a second": (10.0, 1.0, 3),
    "1,000 a second": (1000.0, 0.125, 2),
}


def draw(rng, n: int, label_fraction: float) -> dict[str, np.ndarray]:
    conf = rng.beta(8, 2, n)
    correct = (rng.random(n) < conf).astype(float)
    correct[rng.random(n) >= label_fraction] = np.nan
    return {"latency": rng.lognormal(-3, 0.3, n), "ok": rng.random(n) >= 0.005, "confidence": conf, "correct": correct}


def baseline(rate: float, rng) -> Reference:
    n = 50_000
    rows = draw(rng, n, 1.0)
    errors = int(np.sum(~rows["ok"]))
    return Reference(
        np.sort(rows["latency"][:5000]), confidence_counts(rows["confidence"]), rate, errors, n,
        int(np.nansum(rows["correct"])), n, n / rate, calibration(rows["confidence"], rows["correct"]),
    )  # fmt: skip


def run(rate: float, days: float, seed: int, settings: Settings) -> tuple[int, float]:
    """Episodes of a healthy stream, and window tests per check per day."""
    rng = np.random.default_rng(seed)
    engine = Engine(settings, {("m", "1"): baseline(rate, rng)})
    chunk = max(60.0, min(86400.0, 5000 / rate))  # seconds of traffic drawn at once
    events, t0, end = [], 0.0, days * 86400.0
    while t0 < end:
        n = rng.poisson(rate * chunk)
        rows = draw(rng, n, min(1.0, 10.0 / rate))
        rows["time"] = t0 + np.sort(rng.random(n)) * chunk
        if n:
            events += engine.observe_batch("m", "1", rows)
        t0 += chunk
    events += engine.advance(end)  # not beyond: after the end, silence is real and throughput would say so
    return len(episodes(events)), engine.models["m", "1"].tests.get("latency_shift", 0) / days


def inflated() -> Settings:
    return Settings(
        false_alarms_per_day=20.0, cusum_min_arl=10.0, grades={c: Grade(-math.inf, math.inf) for c in CHECKS}
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds-scale", type=float, default=1.0, help="multiply every level's seeds (default 1)")
    args = p.parse_args()
    print("| traffic | seed-days | budget / day | chance episodes / day (95 % upper) | tests / day / check | wall |")
    print("|---|---|---|---|---|---|")
    for name, (rate, days, seeds) in LEVELS.items():
        seeds = max(1, round(seeds * args.seeds_scale))
        for label, settings in (("0.01 (default)", Settings()), ("20, no effect floor", inflated())):
            started, total, tests = time.perf_counter(), 0, []
            for seed in range(seeds):
                found, per_day = run(rate, days, seed, settings)
                total, tests = total + found, [*tests, per_day]
            seed_days = seeds * days
            upper = stats.chi2.ppf(0.975, 2 * (total + 1)) / 2 / seed_days  # Poisson 95 % upper bound
            wall = time.perf_counter() - started
            print(f"| {name} | {seed_days:g} | {label} | {total / seed_days:.3f} ({upper:.3f}) "
                  f"| {np.mean(tests):.0f} | {wall:.0f} s |")  # fmt: skip


if __name__ == "__main__":
    main()
