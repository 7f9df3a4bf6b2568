"""Detection delay, false alarms and cost of modeltel's degradation detectors: a 100 req/s workload with
injected faults (``--faults``), realistic low-traffic models (``--cases``) and replay speed (``--speed``).

Replays, on an accelerated clock (the data's own timestamps; nothing sleeps), 24 simulated hours of
healthy traffic with a daily curve (rate +-30 %, latency following load +-15 %) and per-minute noise, then
five injected faults, each after 15 healthy minutes and lasting 10 minutes: p95 latency x1.5; error rate
0 -> 5 %; accuracy down 8 points; a confidence-distribution drift; throughput halved. 20 % of predictions
get a label (the rest never do). Prints, per detector and fault, the detection delay in simulated
seconds, and the false alarms per simulated day (alarm episodes outside a fault, or of another check
during one). The monitoring spec's own detector (its step 4: Mann-Whitney p < 0.05 and p95 +10 %;
accuracy below 90 % of baseline; throughput -10 %; against a static first-hour baseline) runs on the
same stream as a baseline row. Goal: every fault within 60 s, fewer than 1 false alarm per day.

``--cases``: the realistic models of ``analytics/simulate.py`` (``benchmarks/realistic.py``): per case,
the labels and predictions from the drop to the first alarm, the episodes, the chance alarms a day and
the wall time. Goals: a 3-point drop within 2,000 labels at 0 chance alarms, one episode per drop.
For a covariate drop (triage), the estimated accuracy and its 95 % band next to the realized accuracy
of the same window, every whole hour from the drop (a few shown, and how often realized was inside).
``--budgets 0.1,0.01``: the credit case, with its drop and healthy, under each ``false_alarms_per_day``
over ``--seeds`` seeds: the labels to detect the drop (median and worst), its episodes, and the chance
alarms over all the seed-days (which checks): what a more conservative budget costs in detection.
``--speed``: ``modeltel detect replay`` of 100,000 rows with a baseline, spanning one hour and 365 days.
Goal: each under 10 s, the same whatever the span.

    python benchmarks/detection.py [--faults] [--cases [--case triage]] [--speed] [--hours 24] [--seed 1]
    python benchmarks/detection.py --budgets 0.1,0.01,0.003 --seeds 5
    python benchmarks/detection.py --write-log tests/data/prediction_log.csv   # the replay test's log
    python benchmarks/detection.py --write-case tests/data   # triage_{log,labels,baseline}.csv
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np

from modeltel_collector.analytics.baseline import load_baselines
from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.logs import read_log
from modeltel_collector.analytics.replay import replay
from modeltel_collector.analytics.settings import Settings
from modeltel_collector.analytics.simulate import CASES, DAY, Case, Stream, generate

sys.path.insert(0, str(Path(__file__).parent))
from realistic import TARGETS, run_case, write_small_case
from realistic import write_log as write_case_log

STEP = 5.0
SEED_CLEAR_S = 60.0  # the spec's detector: an alarm restarts after this long without the condition
FAULTS = {  # name -> (the check that should fire, how traffic changes)
    "p95 latency x1.5": ("latency_shift", {"latency": 1.5}),
    "error rate 0 -> 5 %": ("error_rate_rise", {"errors": 0.05}),
    "accuracy -8 points": ("accuracy_drop", {"accuracy": -0.08}),
    "confidence drift": ("confidence_drift", {"confidence": (6.0, 2.5)}),
    "throughput halved": ("throughput_drop", {"rate": 0.5}),
}
HEALTHY_BEFORE_S, FAULT_S = 900.0, 600.0
TRACK_HOURS = (-24, -1, 1, 6, 24, 72, 168, 336)  # the instants, around a covariate drop, in the tracking table


class Traffic:
    """Synthetic predictions, one ``STEP`` at a time, as the column arrays ``Engine.observe_batch`` takes."""

    def __init__(self, seed: int, rate: float = 100.0, label_fraction: float = 0.2) -> None:
        self.rng, self.rate, self.label_fraction = np.random.default_rng(seed), rate, label_fraction
        self.noise, self.noise_minute = 1.0, -1

    def step(self, t0: float, fault: dict) -> dict[str, np.ndarray]:
        rng = self.rng
        if int(t0 // 60) != self.noise_minute:
            self.noise_minute, self.noise = int(t0 // 60), float(rng.lognormal(0.0, 0.05))
        load = 1.0 + 0.3 * math.sin(2 * math.pi * t0 / 86400.0)
        n = rng.poisson(self.rate * load * self.noise * fault.get("rate", 1.0) * STEP)
        times = t0 + np.sort(rng.random(n)) * STEP
        latency = rng.lognormal(math.log(0.030 * (1 + 0.5 * (load - 1))), 0.35, n) * fault.get("latency", 1.0)
        ok = rng.random(n) >= fault.get("errors", 0.0)
        a, b = fault.get("confidence", (8.0, 2.0))
        correct = (rng.random(n) < 0.92 + fault.get("accuracy", 0.0)).astype(float)
        correct[rng.random(n) >= self.label_fraction] = np.nan
        return {"time": times, "latency": latency, "ok": ok, "confidence": rng.beta(a, b, n), "correct": correct}


class SeedDetector:
    """The monitoring spec's step-4 ``PerformanceDegradationDetector``, as written, on a static baseline."""

    def __init__(self, baseline: list[dict[str, np.ndarray]], seconds: float, sensitivity: float = 0.1) -> None:
        lat = np.concatenate([b["latency"] for b in baseline])
        labels = np.concatenate([b["correct"] for b in baseline])
        labels = labels[~np.isnan(labels)]
        self.latencies = lat[:: max(1, len(lat) // 5000)]
        self.accuracy = float(labels.mean())
        self.throughput = sum(len(b["time"]) for b in baseline) / seconds
        self.sensitivity = sensitivity

    def check(self, window: list[dict[str, np.ndarray]], seconds: float) -> set[str]:
        from scipy import stats

        lat = np.concatenate([b["latency"] for b in window])
        labels = np.concatenate([b["correct"] for b in window])
        labels = labels[~np.isnan(labels)]
        degraded = set()
        p = stats.mannwhitneyu(self.latencies, lat, alternative="less").pvalue
        base95 = np.percentile(self.latencies, 95)
        if p < 0.05 and (np.percentile(lat, 95) - base95) / base95 > self.sensitivity:
            degraded.add("latency_shift")
        if len(labels) and labels.mean() < self.accuracy * (1 - self.sensitivity):
            degraded.add("accuracy_drop")
        if (self.throughput - sum(len(b["time"]) for b in window) / seconds) / self.throughput > self.sensitivity:
            degraded.add("throughput_drop")
        return degraded  # the spec has no error-rate or confidence check


def schedule(hours: float) -> list[tuple[float, float, str | None]]:
    """(start, end, fault name or None) phases: the healthy day, then each fault after a healthy spell."""
    phases, t = [(0.0, hours * 3600.0, None)], hours * 3600.0
    for name in FAULTS:
        phases += [(t, t + HEALTHY_BEFORE_S, None), (t + HEALTHY_BEFORE_S, t + HEALTHY_BEFORE_S + FAULT_S, name)]
        t += HEALTHY_BEFORE_S + FAULT_S
    return phases


def run(hours: float, seed: int) -> dict[str, list[tuple[float, str]]]:
    """Alarm starts (time, check) of modeltel's engine and of the spec's detector on one simulated stream."""
    settings, traffic = Settings(step_s=STEP), Traffic(seed)
    engine = Engine(settings)
    window: deque = deque(maxlen=round(settings.current_s / STEP))
    first_hour: list = []
    seed_detector, seed_last, open_checks = None, {}, set()
    alarms: dict[str, list[tuple[float, str]]] = {"modeltel": [], "monitoring spec": []}
    for start, end, fault_name in schedule(hours):
        fault = FAULTS[fault_name][1] if fault_name else {}
        for t0 in np.arange(start, end, STEP):
            rows = traffic.step(float(t0), fault)
            for e in engine.observe_batch("model", "1", rows):
                if e.state == "resolved":
                    open_checks.discard(e.check)
                elif e.check not in open_checks:  # a severity escalation is the same alarm
                    open_checks.add(e.check)
                    alarms["modeltel"].append((e.time, e.check))
            window.append(rows)
            if seed_detector is None:
                first_hour.append(rows)
                if t0 + STEP >= 3600:
                    seed_detector = SeedDetector(first_hour, 3600.0)
                continue
            now = float(t0 + STEP)
            for check in seed_detector.check(list(window), settings.current_s):
                if now - seed_last.get(check, -math.inf) > SEED_CLEAR_S:
                    alarms["monitoring spec"].append((now, check))
                seed_last[check] = now
    return alarms


def score(alarms: list[tuple[float, str]], hours: float) -> tuple[dict[str, float | None], float]:
    """Delay per fault (first alarm of its check within the fault), and false alarms per healthy day.

    A false alarm is an alarm start outside every fault (allowing 120 s after one for the alarm to settle),
    or one of another check than the fault's during it.
    """
    phases = schedule(hours)
    false = 0
    for t, check in alarms:
        phase = next((p for p in phases if p[2] and p[0] <= t < p[1] + 120.0), None)
        if phase is None or FAULTS[phase[2]][0] != check:
            false += 1
    delays: dict[str, float | None] = {}
    for start, end, name in phases:
        if name:
            hits = [t - start for t, c in alarms if c == FAULTS[name][0] and start <= t < end]
            delays[name] = min(hits) if hits else None
    healthy_s = sum(e - s for s, e, name in phases if not name)
    return delays, false / (healthy_s / 86400.0)


def write_log(path: str, seed: int = 7) -> None:
    """The replay test's log: 5 req/s of model iris v1; 10 healthy minutes, then latency x2 for 2 minutes,
    4 healthy minutes, 20 % errors for 2 minutes, 2 healthy minutes; three bad rows (lines 101, 202, 303)."""
    traffic, epoch = Traffic(seed, rate=5.0, label_fraction=1.0), 1767225600.0
    phases = [(600, {}), (120, {"latency": 2.0}), (240, {}), (120, {"errors": 0.2}), (120, {})]
    lines, t = ["timestamp,model_name,model_version,latency_seconds,status,confidence,correct"], 0.0
    for seconds, fault in phases:
        for t0 in np.arange(t, t + seconds, STEP):
            r = traffic.step(float(t0), fault)
            for i in range(len(r["time"])):
                status = "ok" if r["ok"][i] else "error"
                row = f"{epoch + r['time'][i]:.2f},iris,1,{r['latency'][i]:.4f},{status},{r['confidence'][i]:.2f}"
                lines.append(f"{row},{int(r['correct'][i])}")
        t += seconds
    lines[100] = lines[100].replace(",iris,", ",,")  # missing model_name
    lines[201] = lines[201].replace(",ok,", ",maybe,").replace(",error,", ",maybe,")  # unknown status
    lines[302] = lines[302].split(",", 1)[0] + ",iris,1,fast,ok,0.9,1"  # latency not a number
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def cases(seed: int, only: str | None = None) -> None:
    print("\n| case | rows / days | check | labels to detect | predictions (days) to detect | episodes "
          "| chance alarms/day | wall |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    tracked = []
    for name, case in CASES.items():
        if only and only not in name:
            continue
        targets, stream = TARGETS.get(name, ()), generate(case, seed)
        hourly = hours_around(stream) if case.covariate else []
        r = run_case(stream, targets, seed, probes=[t for _, t in hourly])
        if hourly:
            tracked.append((name, [h for h, _ in hourly], r["probes"]))
        chance = f"{r['chance_per_day']:.3f} {r['chance'] or ''}".strip()
        head = f"| {name} | {r['rows']} / {r['days']:g} |"
        for target in targets or ("-",):
            t = r.get(target, {})
            found = "labels_to_detect" in t
            lab = t["labels_to_detect"] if found else ("missed" if target != "-" else "-")
            pred = f"{t['predictions_to_detect']} ({t['days_to_detect']:.1f} d)" if found else "-"
            print(f"{head} {target} | {lab} | {pred} | {t.get('episodes', '-')} | {chance} | {r['wall_s']:.1f} s |")
            head = "| | |"
    for name, hours, seen in tracked:
        tracking(name, hours, seen)


def hours_around(stream: Stream) -> list[tuple[int, float]]:
    """(hours from the drop, instant) for every whole hour of the stream, counted from its drop."""
    first, last, drop = float(stream.time[0]), float(stream.time[-1]), stream.drop_time
    return [(h, drop + h * 3600.0) for h in range(math.ceil((first - drop) / 3600), int((last - drop) / 3600) + 1)]


def tracking(name: str, hours: list[int], seen: list[dict]) -> None:
    """The confidence-based estimate and its 95 % band next to the realized accuracy of the same predictions,
    at a few instants around the drop, and how often realized fell within the band at every whole hour."""
    print(f"\n{name}: estimated accuracy (95 % band) against the realized accuracy of the same window")
    print("\n| hours from the drop | window (predictions) | estimated | band | realized | within |")
    print("|---|---|---|---|---|---|")
    by_hour = dict(zip(hours, seen, strict=True))
    for h in TRACK_HOURS:
        p = by_hour.get(h, {})
        if "estimate" not in p:
            print(f"| {h:+d} | - | no estimate yet | | | |")
            continue
        inside = p["low"] <= p["realized"] <= p["high"]
        print(f"| {h:+d} | {p['n']} | {p['estimate']:.3f} | {p['low']:.3f}-{p['high']:.3f} | {p['realized']:.3f} "
              f"| {'yes' if inside else 'no'} |")  # fmt: skip
    for label, keep in (("before the drop", lambda h: h < 0), ("after it", lambda h: h >= 0)):
        got = [p for h, p in by_hour.items() if keep(h) and "estimate" in p]
        inside = sum(p["low"] <= p["realized"] <= p["high"] for p in got)
        print(f"\nrealized within the band {label}: {inside} of {len(got)} hourly instants", end="")
        print(f" ({inside / len(got):.0%})" if got else "", end="")
    print()


def budgets(values: list[float], seeds: int) -> None:
    """The credit drop and the healthy credit model under each budget, over seeds 1..``seeds``."""
    drop, healthy = CASES["credit, 3-point drop"], CASES["credit, healthy"]
    print(f"\ncredit, 300 days, seeds 1-{seeds}: the 3-point drop, and the healthy model")
    print("\n| false alarms / day | labels to detect (median, worst) | episodes | chance alarms "
          "(seed-days) | checks | wall |\n|---|---|---|---|---|---|")  # fmt: skip
    for budget in values:
        settings, started = Settings(false_alarms_per_day=budget), time.perf_counter()
        found, eps, chance, checks, days = [], [], 0, set(), 0.0
        for seed in range(1, seeds + 1):
            for case in (drop, healthy):
                stream = generate(case, seed)
                r = run_case(stream, TARGETS.get("credit, 3-point drop") if case.drop else (), seed, settings)
                healthy_days = ((stream.drop_time or stream.time[-1]) - stream.time[0]) / DAY
                chance, days = chance + round(r["chance_per_day"] * healthy_days), days + healthy_days
                checks |= set(r["chance"])
                if case.drop:
                    eps.append(r["accuracy_drop"]["episodes"])
                    found.append(r["accuracy_drop"].get("labels_to_detect", math.inf))
        worst = max(found)
        print(f"| {budget:g} | {np.median(found):.0f}, {worst:.0f} | {', '.join(map(str, eps))} "
              f"| {chance} ({days:.0f}) | {', '.join(sorted(checks)) or '-'} "
              f"| {time.perf_counter() - started:.0f} s |")  # fmt: skip


def speed(seed: int, rows: int = 100_000) -> None:
    """``replay`` (log parsing included) of ``rows`` rows against a captured baseline, over 1 h and 365 d."""
    print(f"\n| replay of {rows} rows | span | CPU (goal < 10 s) | wall | detections |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for days in (1 / 24, 365.0):
            case = Case("speed", days, days * DAY / rows, label_delay_days=(0.0, 0.0))
            log, ref = Path(tmp) / "log.csv", Path(tmp) / "ref.csv"
            write_case_log(generate(case, seed), str(log), labelled=True)
            write_case_log(generate(case.scaled(days=days / 5, start=case.start - days / 5 * DAY), seed + 1), str(ref),
                           labelled=True)  # fmt: skip
            started, cpu = time.perf_counter(), time.process_time()
            result = replay(read_log(log), baselines=load_baselines(ref))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - started
            print(f"| {rows} | {days * 24:g} h | {cpu:.1f} s | {wall:.1f} s | {len(result.events)} |")


def faults(hours: float, seed: int) -> None:
    started = time.perf_counter()
    alarms = run(hours, seed)
    wall = time.perf_counter() - started
    healthy_days = (hours * 3600 + len(FAULTS) * HEALTHY_BEFORE_S) / 86400
    print(f"{hours:g} h healthy + {len(FAULTS)} faults at 100 req/s, seed {seed}, {wall:.0f} s wall")
    print("detection delay in simulated seconds (goal <= 60 s); false alarms per simulated day (goal < 1)\n")
    print(f"| detector | {' | '.join(FAULTS)} | false alarms/day |")
    print("|---" * (len(FAULTS) + 2) + "|")
    for name, found in alarms.items():
        delays, fa_day = score(found, hours)
        cells = ["missed" if v is None else f"{v:.0f} s" for v in delays.values()]
        print(
            f"| {name} | {' | '.join(cells)} | {fa_day:.2f} ({round(fa_day * healthy_days)} in {healthy_days:.2f} d) |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--faults", action="store_true", help="the 100 req/s fault injection (default: all three)")
    p.add_argument("--cases", action="store_true", help="the realistic low-traffic cases")
    p.add_argument("--case", metavar="TEXT", help="with --cases: only the cases whose name contains TEXT")
    p.add_argument("--speed", action="store_true", help="replay of 100,000 rows over 1 h and 365 d")
    p.add_argument("--budgets", metavar="B,B", help="the credit case under each false_alarms_per_day")
    p.add_argument("--seeds", type=int, default=5, help="with --budgets: seeds 1..N (5)")
    p.add_argument("--hours", type=float, default=24.0, help="healthy simulated hours before the faults (24)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--write-log", metavar="PATH", help="write the replay test's small log and exit")
    p.add_argument("--write-case", metavar="DIR", help="write the realistic replay test's log, labels, baseline")
    args = p.parse_args()
    if args.write_log:
        write_log(args.write_log)
        return
    if args.write_case:
        write_small_case(args.write_case)
        return
    if args.budgets:
        budgets([float(b) for b in args.budgets.split(",")], args.seeds)
        return
    every = not (args.faults or args.cases or args.speed)
    if args.faults or every:
        faults(args.hours, args.seed)
    if args.cases or every:
        cases(args.seed, args.case)
    if args.speed or every:
        speed(args.seed)


if __name__ == "__main__":
    main()
