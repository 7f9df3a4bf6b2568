"""baseline-metrics.json: what "normal" was for each model version, versioned and validated.

The file records, per model version, the window it covers, request rate, error rate, accuracy (from
labelled predictions), latency as a mergeable sketch (with its p50/p90/p95/p99 for people), and the
confidence distribution as counts in the SDK histogram's buckets (the taxonomy's, so a baseline from a
log, from /metrics or from Prometheus is the same shape, and the live detector compares like with like).
A file that fails validation is reported with every reason and never silently replaced. ``to_reference``
turns an entry back into what the detectors compare against (latency as 1000 evenly spaced quantiles).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from modeltel.plainjson import dumps

from .accuracy import calibration
from .detectors import CONFIDENCE_BINS, CONFIDENCE_BOUNDS, confidence_counts
from .logs import BadRow, Row, read_log
from .reference import Reference, rate_profile
from .sketch import Sketch

SCHEMA = "modeltel.baseline/2"  # /1 held confidence in 20 fixed bins
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
_POINTS = (np.arange(1000) + 0.5) / 1000


def capture(rows: Iterable[Row | BadRow]) -> dict:
    """A baseline document from prediction rows (bad rows are ignored here; ``read_log`` reports them)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if isinstance(row, Row):
            groups.setdefault((row.model, row.version), []).append(row)
    return {"schema": SCHEMA, "models": [_entry(m, v, rs) for (m, v), rs in sorted(groups.items())]}


def _entry(model: str, version: str, rows: list[Row]) -> dict:
    labelled = [r.correct for r in rows if r.correct is not None]
    times = np.array([r.time for r in rows])
    entry = make_entry(
        model,
        version,
        (float(times.min()), float(times.max())),
        np.array([r.latency for r in rows]),
        confidence_counts(np.array([r.confidence for r in rows])),
        (len(rows), sum(not r.ok for r in rows)),
        (len(labelled), sum(labelled)),
    )
    both = [(r.confidence, r.correct) for r in rows if r.correct is not None and not math.isnan(r.confidence)]
    if both:
        conf, right = np.array(both, float).T
        labelled, correct = calibration(conf, right)
        entry["calibration"] = {"labelled": [int(x) for x in labelled], "correct": [int(x) for x in correct]}
    profile = rate_profile(times, np.ones(len(times)), float(times.min()), float(times.max()))
    if profile is not None:
        entry["rate_profile"] = [float(x) for x in profile]
    return entry


def make_entry(
    model: str,
    version: str,
    window: tuple[float, float],
    latencies: np.ndarray,
    confidence: np.ndarray,
    requests_errors: tuple[int, int],
    labelled_correct: tuple[int, int],
) -> dict:
    """One model version's entry. ``latencies`` may be a uniform subsample; ``confidence`` is counts per
    bucket of ``CONFIDENCE_BOUNDS``; the other counts are the totals."""
    (start, end), (requests, errors), (labelled, correct) = window, requests_errors, labelled_correct
    seconds = max(end - start, 1e-9)
    sketch = Sketch().add(latencies)
    return {
        "model_name": model,
        "model_version": version,
        "window": {"start": start, "end": end, "seconds": seconds},
        "requests": int(requests),
        "rate_per_second": requests / seconds,
        "errors": int(errors),
        "error_rate": errors / requests if requests else 0.0,
        "labelled": int(labelled),
        "correct": int(correct),
        "accuracy": correct / labelled if labelled else None,
        "latency_seconds": {
            **{k: float(v) for k, v in zip(_QUANTILES, sketch.quantiles(list(_QUANTILES.values())), strict=True)},
            "sketch": sketch.to_dict(),
        },
        "confidence_histogram": {
            "bounds": list(CONFIDENCE_BOUNDS),
            "counts": [int(c) for c in confidence],
        },
    }


def validate(doc: object) -> list[str]:
    """Every reason ``doc`` is not a valid baseline document (empty when it is)."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    if doc.get("schema") != SCHEMA:
        return [f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}"]
    if not isinstance(doc.get("models"), list):
        return ["'models' is not a list"]
    errors = []
    for i, m in enumerate(doc["models"]):
        errors += [f"models[{i}]: {e}" for e in _validate_entry(m)]
    return errors


def _validate_entry(m: object) -> list[str]:
    if not isinstance(m, dict):
        return ["not an object"]
    errors = [f"{k} is not a non-empty string" for k in ("model_name", "model_version") if not _text(m.get(k))]
    for key in ("requests", "errors", "labelled", "correct"):
        if not isinstance(m.get(key), int) or m[key] < 0:
            errors.append(f"{key} is not a non-negative integer")
    window = m.get("window")
    if not isinstance(window, dict) or not all(isinstance(window.get(k), (int, float)) for k in ("start", "end")):
        errors.append("window lacks numeric start/end")
    elif not isinstance(window.get("seconds"), (int, float)) or window["seconds"] <= 0:
        errors.append("window.seconds is not positive")
    if not errors and (m["errors"] > m["requests"] or m["correct"] > m["labelled"]):
        errors.append("errors > requests or correct > labelled")
    try:
        Sketch.from_dict(m["latency_seconds"]["sketch"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        errors.append(f"latency_seconds.sketch is invalid ({exc!r})")
    hist = m.get("confidence_histogram")
    bounds, counts = (hist.get("bounds"), hist.get("counts")) if isinstance(hist, dict) else (None, None)
    if bounds != list(CONFIDENCE_BOUNDS):
        errors.append(f"confidence_histogram.bounds is not the taxonomy's {list(CONFIDENCE_BOUNDS)}")
    if (
        not isinstance(counts, list)
        or len(counts) != CONFIDENCE_BINS
        or not all(isinstance(c, int) and c >= 0 for c in counts)
    ):
        errors.append(f"confidence_histogram.counts is not {CONFIDENCE_BINS} non-negative integers")
    errors += _validate_optional(m)
    return errors


def _validate_optional(m: dict) -> list[str]:
    """``calibration`` (labels per confidence bucket) and ``rate_profile`` (requests/s by hour of the day
    or week) are optional: older files, and baselines captured without labels or over under two days."""
    errors = []
    cal = m.get("calibration")
    if cal is not None:
        lab, right = (cal.get("labelled"), cal.get("correct")) if isinstance(cal, dict) else (None, None)
        ok = all(
            isinstance(x, list) and len(x) == CONFIDENCE_BINS and all(isinstance(c, int) and c >= 0 for c in x)
            for x in (lab, right)
        )
        if not ok or any(r > n for r, n in zip(right, lab, strict=True)):
            errors.append(f"calibration is not {CONFIDENCE_BINS} labelled and correct counts (correct <= labelled)")
    profile = m.get("rate_profile")
    if profile is not None and (
        not isinstance(profile, list)
        or len(profile) not in (24, 168)
        or not all(isinstance(x, (int, float)) and x >= 0 for x in profile)
    ):
        errors.append("rate_profile is not 24 or 168 non-negative rates")
    return errors


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def load(path: str | Path) -> dict:
    """A validated baseline document; ``ValueError`` naming every problem otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt baseline (not JSON: {exc.msg} at line {exc.lineno})") from None
    errors = validate(doc)
    if errors:
        raise ValueError("invalid baseline: " + "; ".join(errors))
    return doc


def save(doc: dict, path: str | Path) -> None:
    """Write atomically (a crash leaves the old file, never half a new one)."""
    errors = validate(doc)
    if errors:
        raise ValueError("refusing to write an invalid baseline: " + "; ".join(errors))
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def to_reference(entry: dict) -> Reference:
    """The detectors' reference from one validated entry."""
    lat = Sketch.from_dict(entry["latency_seconds"]["sketch"]).quantiles(_POINTS)
    return Reference(
        lat,
        np.asarray(entry["confidence_histogram"]["counts"], np.int64),
        entry["rate_per_second"] if "rate_per_second" in entry else entry["requests"] / entry["window"]["seconds"],
        entry["errors"],
        entry["requests"],
        entry["correct"],
        entry["labelled"],
        entry["window"]["seconds"],
        _calibration(entry),
        np.asarray(entry["rate_profile"], float) if "rate_profile" in entry else None,
    )


def _calibration(entry: dict) -> np.ndarray | None:
    cal = entry.get("calibration")
    return None if cal is None else np.array([cal["labelled"], cal["correct"]], np.int64)


def load_baselines(path: str | Path) -> dict[tuple[str, str], Reference]:
    """References per (model, version) from a baseline-metrics.json, or from a prediction log captured whole."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError:
        doc = None  # not one JSON document: a CSV or JSON-lines log
    doc = load(path) if isinstance(doc, dict) and "schema" in doc else capture(read_log(path))
    return {(m["model_name"], m["model_version"]): to_reference(m) for m in doc["models"]}
