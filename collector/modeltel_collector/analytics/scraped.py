"""A baseline from the collector's /metrics or from Prometheus: the increase of the counters and histograms
over a window.

Why two scrapes: /metrics holds cumulative totals since each process started, so what was normal over the
last ``seconds`` is the difference of two scrapes that far apart; Prometheus has the history, so one
``increase()`` query per series answers at once (extrapolated, so counts are rounded). Latency comes from
histogram buckets, not raw samples: it is turned into evenly spaced quantiles, linear within a bucket as
``histogram_quantile`` does, and those feed the same sketch as ``--log`` (so the baseline is only as fine
as the buckets). Confidence is kept as the histogram's own bucket counts, which is what a baseline holds.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from modeltel import taxonomy as tx

from .baseline import SCHEMA, make_entry
from .detectors import CONFIDENCE_BINS, CONFIDENCE_BOUNDS
from .health import parse_samples

_N = 1000  # pseudo-samples per histogram
Totals = dict[tuple[str, str], dict[str, dict]]


def scrape(url: str, token: str = "") -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url.rstrip("/") + "/metrics", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()


def totals(samples: Iterable[tuple[str, dict[str, str], float]]) -> Totals:
    """Per (model, version): request/error/labelled/correct counts and latency/confidence buckets (by le)."""
    out: Totals = defaultdict(lambda: {"counts": defaultdict(float), "latency": defaultdict(float),
                                       "confidence": defaultdict(float)})  # fmt: skip
    latency = tx.PREDICTION_LATENCY.prometheus_name + "_bucket"
    confidence = tx.PREDICTION_CONFIDENCE.prometheus_name + "_bucket"
    for name, labels, value in samples:
        key = (labels.get("model_name", ""), labels.get("model_version", ""))
        if not key[0]:
            continue
        if name == tx.PREDICTIONS.prometheus_name + "_total":
            out[key]["counts"]["requests"] += value
            if labels.get(tx.ATTR_STATUS) == tx.STATUS_ERROR:
                out[key]["counts"]["errors"] += value
        elif name == tx.LABELLED_PREDICTIONS.prometheus_name + "_total":
            out[key]["counts"]["labelled"] += value
            if labels.get(tx.ATTR_CORRECT) == "true":
                out[key]["counts"]["correct"] += value
        elif name in (latency, confidence):
            out[key]["latency" if name == latency else "confidence"][float(labels["le"])] += value
    return out


def quantiles(buckets: dict[float, float], n: int = _N) -> np.ndarray:
    """``n`` evenly spaced quantiles of a cumulative histogram; mass above the last bound sits on it."""
    les = sorted(le for le in buckets if math.isfinite(le))
    total = max(buckets.values(), default=0.0)
    if total <= 0 or not les:
        return np.array([])
    cdf = np.maximum.accumulate(np.array([0.0] + [buckets[le] for le in les]) / total)
    return np.interp((np.arange(n) + 0.5) / n, cdf, np.array([0.0, *les]))


def bucket_counts(buckets: dict[float, float]) -> np.ndarray:
    """Counts per confidence bucket from cumulative ``le`` buckets; none (zeros) for other bucket bounds."""
    les = [*CONFIDENCE_BOUNDS, math.inf]
    if any(le not in buckets for le in les):
        return np.zeros(CONFIDENCE_BINS, np.int64)
    cumulative = np.maximum.accumulate([buckets[le] for le in les])
    return np.round(np.diff(cumulative, prepend=0.0)).astype(np.int64)


def capture_scraped(before: str, after: str, window: tuple[float, float]) -> dict:
    """A baseline document from two scrapes ``window`` (start, end) apart: the increase of every series."""
    first, last = totals(parse_samples(before)), totals(parse_samples(after))
    increase = {
        key: {
            part: {k: max(v - first.get(key, {}).get(part, {}).get(k, 0.0), 0.0) for k, v in last[key][part].items()}
            for part in ("counts", "latency", "confidence")
        }
        for key in last
    }
    return document(increase, window)


# What Prometheus is asked (each an increase over the window), and the series name totals() files it under.
_PROMQL = {
    tx.PREDICTIONS.prometheus_name + "_total": "status",
    tx.LABELLED_PREDICTIONS.prometheus_name + "_total": tx.ATTR_CORRECT,
    tx.PREDICTION_LATENCY.prometheus_name + "_bucket": "le",
    tx.PREDICTION_CONFIDENCE.prometheus_name + "_bucket": "le",
}


def capture_prometheus(url: str, seconds: float, end: float | None = None) -> dict:
    """A baseline document from Prometheus' HTTP API: ``increase()`` of the same series over ``seconds``."""
    end = time.time() if end is None else end
    samples = []
    for name, by in _PROMQL.items():
        expr = f"sum by (model_name, model_version, {by}) (increase({name}[{max(round(seconds), 1)}s]))"
        query = urllib.parse.urlencode({"query": expr, "time": f"{end:.3f}"})
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?{query}", timeout=30) as resp:
            result = json.load(resp)["data"]["result"]
        samples += [(name, r["metric"], float(r["value"][1])) for r in result]
    return document(totals(samples), (end - seconds, end))


def document(increase: Totals, window: tuple[float, float]) -> dict:
    """Entries from each model version's increases; a version idle over the window gets none."""
    models = []
    for key in sorted(increase):
        part = increase[key]
        counts = {k: round(part["counts"].get(k, 0.0)) for k in ("requests", "errors", "labelled", "correct")}
        if counts["requests"] <= 0:
            continue
        lat, conf = quantiles(part["latency"]), bucket_counts(part["confidence"])
        models.append(
            make_entry(
                *key, window, lat, conf, (counts["requests"], counts["errors"]), (counts["labelled"], counts["correct"])
            )
        )
    return {"schema": SCHEMA, "models": models}
