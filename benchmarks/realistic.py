"""The realistic cases of ``benchmarks/detection.py``: low traffic, late labels, seasonality, quiet nights.

Each case (``analytics/simulate.py``) is replayed through the engine as ``modeltel detect replay`` with a
``--baseline`` would: a fixed baseline from 30 healthy days of the same model (another seed), then the
stream's predictions and its delayed labels in arrival order. Scored per case: the labelled rows (and
predictions) from the drop to the first alarm of the check that should fire, the episodes of that
check, the chance alarms a day (episodes of any check while healthy, and of other checks during the
drop), and the wall time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modeltel_collector.analytics.baseline import capture, to_reference
from modeltel_collector.analytics.engine import Engine
from modeltel_collector.analytics.logs import Row
from modeltel_collector.analytics.simulate import DAY, Case, Stream, generate

MODEL, VERSION = "model", "1"


def rows(stream: Stream, *, labelled: bool) -> list[Row]:
    """The stream's predictions as log rows; with ``labelled`` each carries its label (a baseline's data)."""
    s = stream
    correct = s.correct.tolist() if labelled else [None] * len(s.time)
    return [
        Row(i + 2, t, MODEL, VERSION, lat, ok, c, y)
        for i, (t, lat, ok, c, y) in enumerate(
            zip(s.time.tolist(), s.latency.tolist(), s.ok.tolist(), s.confidence.tolist(), correct, strict=True)
        )
    ]


def baseline_for(stream: Stream, seed: int) -> dict:
    """A fixed baseline: 30 healthy days of the same model, another seed, every prediction labelled."""
    healthy = stream.case.scaled(days=30.0, drop=0.0, start=stream.case.start - 30 * DAY)
    return {(MODEL, VERSION): to_reference(capture(rows(generate(healthy, seed + 1000), labelled=True))["models"][0])}


def drive(engine: Engine, stream: Stream, *, probes: Sequence[float] = (), seen: list | None = None) -> list:
    """Predictions and delayed labels in arrival order through ``engine``; every event it raised. At each of
    the sorted ``probes`` instants the clock is moved there and ``probe``'s reading appended to ``seen``."""
    s, events, waiting = stream, [], deque(probes)
    engine.traffic_ended(float(s.time[-1]))  # labels go on after the last prediction: that silence is not a drop
    for kind, i, t in s.events():
        while waiting and waiting[0] <= t:
            at = waiting.popleft()
            events += engine.advance(at)
            seen.append(probe(engine, stream, at))
        if kind == "prediction":
            events += engine.observe(
                t, MODEL, VERSION, float(s.latency[i]), ok=bool(s.ok[i]), confidence=float(s.confidence[i]), line=i + 2
            )
        else:
            events += engine.label(t, MODEL, VERSION, correct=bool(s.correct[i]))
    return events + engine.advance(float(max(s.time[-1], s.labels[0][-1])) + 3600.0)


def probe(engine: Engine, stream: Stream, at: float) -> dict:
    """At ``at``: the last confidence-based estimate (with its band) and the realized accuracy of the same
    predictions, the last ``current`` up to the instant it was computed (the simulation knows every answer,
    labelled or not)."""
    w = engine.models.get((MODEL, VERSION))
    est = w.results.get("estimated_accuracy_drop") if w else None
    if est is None or "estimate" not in est.details:
        return {"at": at}
    tested, n = w.tested["estimated_accuracy_drop"][0], est.details["current"]
    end = int(np.searchsorted(stream.time, tested, side="right"))
    realized = float(np.mean(stream.correct[max(0, end - n) : end]))
    return {"at": at, "tested": tested, "n": n, "realized": realized,
            **{k: est.details[k] for k in ("estimate", "low", "high")}}  # fmt: skip


def episodes(events: list) -> list[tuple[float, str]]:
    """(start, check) of each alarm episode: a severity escalation is the same episode."""
    starts, open_checks = [], set()
    for e in events:
        if e.state == "resolved":
            open_checks.discard(e.check)
        elif e.check not in open_checks:
            open_checks.add(e.check)
            starts.append((e.time, e.check))
    return starts


def score(stream: Stream, events: list, targets: tuple[str, ...]) -> dict:
    """Per target check: labels and predictions from the drop to its first alarm, and its episodes; chance
    alarms a day (any other episode while traffic flows: after the last prediction, silence is real)."""
    drop, end = stream.drop_time, float(stream.time[-1])
    starts = episodes(events)
    healthy_days = ((drop or end) - stream.time[0]) / DAY
    chance = [(t, c) for t, c in starts if t <= end and (drop is None or t < drop or c not in targets)]
    out = {"rows": len(stream.time), "days": stream.case.days, "chance_per_day": len(chance) / healthy_days,
           "chance": sorted({c for _, c in chance})}  # fmt: skip
    when, which = stream.labels
    for target in targets if drop is not None else ():
        hits = [t for t, c in starts if c == target and t >= drop]
        row = {"episodes": len(hits)}
        if hits:
            post = stream.time[which] >= drop
            row["labels_to_detect"] = int(np.sum(post & (when >= drop) & (when <= hits[0])))
            row["predictions_to_detect"] = int(np.sum((stream.time >= drop) & (stream.time <= hits[0])))
            row["days_to_detect"] = (hits[0] - drop) / DAY
        out[target] = row
    return out


def run_case(
    stream: Stream, targets: tuple[str, ...], seed: int, settings=None, *, probes: Sequence[float] = ()
) -> dict:
    """The case replayed against its baseline; wall time includes capturing the baseline. ``probes``: the
    instants (sorted) whose estimated and realized accuracy are returned under ``"probes"``."""
    started = time.perf_counter()
    engine, seen = Engine(settings, baseline_for(stream, seed)), []
    events = drive(engine, stream, probes=probes, seen=seen)
    return {**score(stream, events, targets), "wall_s": time.perf_counter() - started, "probes": seen}


TARGETS = {  # case -> the checks that should fire on its drop
    "credit, 3-point drop": ("accuracy_drop",),
    "triage multiclass, 20-point drop": ("accuracy_drop", "estimated_accuracy_drop", "confidence_drift"),
}


def write_log(stream: Stream, path: str, *, labels_path: str | None = None, labelled: bool = False) -> None:
    """The stream as a prediction log (CSV), and its delayed labels as a labels file in arrival order.
    With ``labelled`` each row carries its own label instead (a baseline log)."""
    s = stream
    head = "timestamp,model_name,model_version,latency_seconds,status,confidence,prediction_id"
    lines = [head + (",correct" if labelled else "")]
    for i in range(len(s.time)):
        status = "ok" if s.ok[i] else "error"
        row = f"{s.time[i]:.1f},{MODEL},{VERSION},{s.latency[i]:.4f},{status},{s.confidence[i]:.4f},p{i}"
        lines.append(row + (f",{int(s.correct[i])}" if labelled else ""))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if labels_path:
        when, which = s.labels
        out = [
            "timestamp,prediction_id,correct",
            *(f"{t:.1f},p{i},{int(s.correct[i])}" for t, i in zip(when, which, strict=True)),
        ]
        with open(labels_path, "w") as f:
            f.write("\n".join(out) + "\n")


SMALL = Case("triage", 14.0, 600.0, accuracy=0.85, classes=5, drop=0.20, covariate=True, label_delay_days=(1.0, 3.0))


def write_small_case(directory: str, seed: int = 5) -> None:
    """The replay test's committed case: a 5-class model, one prediction every 10 minutes for 14 days, its
    confidence and accuracy falling 20 points on day 7, labels 1-3 days late and out of order; a labelled
    7-day baseline. Plus two bad inputs: a row 10 minutes back in time (line 1001) and a label naming no
    prediction (the labels file's last line)."""
    stream = generate(SMALL, seed)
    base = generate(SMALL.scaled(days=14.0, drop=0.0, start=SMALL.start - 14 * DAY), seed + 1)
    log, labels = f"{directory}/triage_log.csv", f"{directory}/triage_labels.csv"
    write_log(stream, log, labels_path=labels)
    write_log(base, f"{directory}/triage_baseline.csv", labelled=True)
    lines = Path(log).read_text().splitlines()
    t = float(lines[999].split(",")[0]) - 600.0
    lines[1000] = f"{t:.1f}," + lines[1000].split(",", 1)[1].replace(",p1000", ",late")
    Path(log).write_text("\n".join(lines) + "\n")
    with open(labels, "a") as f:
        f.write(f"{stream.labels[0][-1] + 1:.1f},nosuchid,1\n")
