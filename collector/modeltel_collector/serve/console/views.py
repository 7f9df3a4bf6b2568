"""The console's JSON documents: rates, error ratios and quantiles computed from the metric history.

Each view reads ``MetricHistory`` only; the arithmetic is Prometheus' (``rate`` = increase over time,
``histogram_quantile`` over summed bucket increases), so the console agrees with a PromQL dashboard fed
by the same ``/metrics``. Values that do not exist (no requests in a window) are ``null``, never NaN,
which JSON cannot carry.
"""

from __future__ import annotations

import math
import time
from itertools import pairwise
from typing import Any

from modeltel import taxonomy as tx
from modeltel.promql import histogram_quantile
from modeltel_collector.latency_bounds import bounds_problem
from modeltel_collector.store.history import Group, MetricHistory
from modeltel_collector.translate import label_name, metric_family_name


def family(instrument: tx.Instrument) -> str:
    """The family name the metric store files an instrument under (``_ratio`` for unit-1 gauges)."""
    return metric_family_name(instrument.otel_name, instrument.unit, instrument.kind is tx.InstrumentKind.GAUGE)


LATENCY = family(tx.PREDICTION_LATENCY)
STAGE_LATENCY = family(tx.STAGE_LATENCY)
PREDICTIONS = family(tx.PREDICTIONS)
ERRORS = family(tx.ERRORS)
BATCH = family(tx.BATCH_SIZE)
CONFIDENCE = family(tx.PREDICTION_CONFIDENCE)
RESOURCE_METERS = (
    tx.RESOURCE_USAGE,
    tx.GPU_UTILIZATION,
    tx.GPU_MEMORY_USAGE,
    tx.GPU_MEMORY_LIMIT,
    tx.GPU_TEMPERATURE,
    tx.GPU_POWER,
)
TTFT = family(tx.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
TPOT = family(tx.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)
TOKENS = family(tx.GEN_AI_CLIENT_TOKEN_USAGE)
CONSOLE_FAMILIES = (LATENCY, STAGE_LATENCY, PREDICTIONS, ERRORS, BATCH, CONFIDENCE, TTFT, TPOT, TOKENS,
                    *map(family, RESOURCE_METERS))  # fmt: skip

MODEL, VERSION = label_name(tx.ATTR_MODEL_NAME), label_name(tx.ATTR_MODEL_VERSION)
STAGE, STATUS, ERROR_TYPE = label_name(tx.ATTR_STAGE), label_name(tx.ATTR_STATUS), label_name(tx.ATTR_ERROR_TYPE)
TOKEN_TYPE = label_name(tx.ATTR_GEN_AI_TOKEN_TYPE)
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
MAX_POINTS = 240  # per chart: more than a chart's width in pixels would only cost bandwidth


_PIPELINE = {stage: i for i, stage in enumerate(tx.CANONICAL_STAGES)}


def stage_order(stage: str) -> tuple[int, str]:
    """Sort key: the taxonomy's pipeline order (preprocess, inference, postprocess), then custom stages by
    name, so every list of stages the console shows reads in the order a request runs through them."""
    return (_PIPELINE.get(stage, len(_PIPELINE)), stage)


def _num(x: float | None) -> float | None:
    """Six significant digits (float32 rows hold about seven), ``None`` for what JSON cannot carry."""
    return None if x is None or math.isnan(x) or math.isinf(x) else float(f"{x:.6g}")


def _sum_rows(rows: list[list[float] | None]) -> list[float] | None:
    present = [r for r in rows if r is not None]
    if not present:
        return None
    return [sum(col) for col in zip(*present, strict=True)]


def _downsample(times: list[float], rows: list[list[float] | None], k: int) -> tuple[list[float], list]:
    """Sum every ``k`` consecutive rows (increases add up), stamped with the last sample's time."""
    if k <= 1:
        return times, rows
    start = len(times) % k  # align the groups to the newest sample
    out_t, out_r = [], []
    if start:
        out_t.append(times[start - 1])
        out_r.append(_sum_rows(rows[:start]))
    for i in range(start, len(times), k):
        out_t.append(times[i + k - 1])
        out_r.append(_sum_rows(rows[i : i + k]))
    return out_t, out_r


def _seconds(times: list[float], first: float) -> list[float]:
    """How long each row's increase took: the gap to the previous sample (``first`` for the oldest)."""
    return [first, *(b - a for a, b in pairwise(times))][: len(times)]


def _rate(row: list[float] | None, seconds: float) -> float | None:
    return None if row is None else _num(sum(row[:-1]) / seconds if len(row) > 1 else row[0] / seconds)


def _quantile(q: float, bounds: tuple[float, ...], row: list[float] | None) -> float | None:
    return None if row is None else _num(histogram_quantile(q, bounds, row[:-1]))


def _exemplars(group: Group, since: float | None) -> list[dict[str, Any]]:
    return [
        {"t": t, "value": _num(v), "trace_id": tid, "span_id": sid}
        for t, v, tid, sid in group.exemplars
        if since is None or t >= since
    ]


def _histogram_series(group: Group, rows: list, seconds: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {name: [_quantile(q, group.bounds, r) for r in rows] for name, q in QUANTILES}
    out["rate"] = [_rate(r, s) for r, s in zip(rows, seconds, strict=True)]
    out["mean"] = [_num(r[-1] / sum(r[:-1])) if r is not None and sum(r[:-1]) else None for r in rows]
    return out


def _generation(series: Any, seconds: list[float], since: float | None) -> dict[str, Any] | None:
    """A generative model's charts (None for any other model): TTFT and TPOT quantiles, output tokens per
    second and tokens per request, summed over operations and gen_ai models, each with its exemplars."""
    _, ttft = series(TTFT, ())
    _, tpot = series(TPOT, ())
    _, tokens = series(TOKENS, (TOKEN_TYPE,))
    if not (ttft or tpot or tokens):
        return None
    doc: dict[str, Any] = {}
    for key, found in (("ttft", ttft), ("tpot", tpot)):
        doc[key] = (
            {**_histogram_series(*found[0], seconds), "exemplars": _exemplars(found[0][0], since)} if found else None
        )
    by_type = {g.labels[TOKEN_TYPE]: (g, rows) for g, rows in tokens}
    for token_type in (tx.GEN_AI_TOKEN_OUTPUT, tx.GEN_AI_TOKEN_INPUT):
        found = by_type.get(token_type)
        doc[f"{token_type}_tokens"] = (
            {**_histogram_series(*found, seconds), "exemplars": _exemplars(found[0], since)} if found else None
        )
    output = by_type.get(tx.GEN_AI_TOKEN_OUTPUT)
    # a token usage row ends with the increase of its sum: the tokens that came out in that interval
    doc["output_tokens_per_s"] = (
        [None if r is None else _num(r[-1] / dt) for r, dt in zip(output[1], seconds, strict=True)] if output else []
    )
    return doc


class Views:
    """Builds each document from one ``MetricHistory``; ``now`` is injectable so tests pin windows."""

    def __init__(self, history: MetricHistory) -> None:
        self.history = history

    def models(self, window_s: float = 300.0, now: float | None = None) -> dict[str, Any]:
        """One row per (model, version): requests/s, error ratio and quantiles over the last ``window_s``."""
        h = self.history
        now = time.time() if now is None else now
        since = now - max(window_s, h.step_s)
        names = sorted(
            set(h.label_values(PREDICTIONS, (MODEL, VERSION))) | set(h.label_values(LATENCY, (MODEL, VERSION)))
        )
        rows = []
        for name, version in names:
            where = {MODEL: name, VERSION: version}
            times, by_status = h.query(PREDICTIONS, where, (STATUS,))
            gaps = _seconds(times, h.step_s)
            recent = [i for i, t in enumerate(times) if t > since]
            seconds = sum(gaps[i] for i in recent) or h.step_s
            total = sum(g.rows[i][0] for g in by_status for i in recent if g.rows[i] is not None)
            errors = sum(
                g.rows[i][0] for g in by_status if g.labels[STATUS] == tx.STATUS_ERROR for i in recent if g.rows[i]
            )
            all_status = [_sum_rows([g.rows[i] for g in by_status]) for i in range(len(times))]
            k = max(1, math.ceil(len(times) / 60))
            spark_t, spark = _downsample(times, all_status, k)
            _, latency = h.query(LATENCY, where)
            window = _sum_rows([latency[0].rows[i] for i in recent]) if latency else None
            row = {
                "model": name,
                "version": version,
                "requests_per_s": _num(total / seconds),
                "error_ratio": _num(errors / total) if total else None,
                "sparkline": [_rate(r, dt) for r, dt in zip(spark, _seconds(spark_t, k * h.step_s), strict=True)],
            }
            row.update(
                {name_q: _quantile(q, latency[0].bounds, window) if latency else None for name_q, q in QUANTILES}
            )
            row["bounds_warning"] = bounds_problem(latency[0].bounds) if latency else None
            rows.append(row)
        return {"window_s": window_s, "models": rows, "history": h.describe()}

    def model(self, name: str, version: str, range_s: float | None = None) -> dict[str, Any]:
        """Charts over time for one model: stage quantiles with exemplars, throughput, errors, batch, confidence."""
        h = self.history
        where = {MODEL: name, VERSION: version} if version else {MODEL: name}  # no version: all of them
        since = time.time() - range_s if range_s else None
        k = max(1, math.ceil(len(h.times(since)) / MAX_POINTS))

        def series(fam: str, by: tuple[str, ...]) -> tuple[list[float], list[tuple[Group, list]]]:
            times, groups = h.query(fam, where, by, since)
            return _downsample(times, [None] * len(times), k)[0], [
                (g, _downsample(times, g.rows, k)[1]) for g in groups
            ]

        times, stage_groups = series(STAGE_LATENCY, (STAGE,))
        seconds = _seconds(times, k * h.step_s)
        _, e2e = series(LATENCY, ())
        stages = []
        for label, (g, rows) in [("prediction", p) for p in e2e] + sorted(
            ((g.labels[STAGE], (g, rows)) for g, rows in stage_groups), key=lambda x: stage_order(x[0])
        ):
            doc = {"stage": label, **_histogram_series(g, rows, seconds), "bounds_warning": bounds_problem(g.bounds)}
            doc["exemplars"] = _exemplars(g, since)
            stages.append(doc)
        counters = {}
        for key, fam, by in (("throughput", PREDICTIONS, STATUS), ("errors", ERRORS, ERROR_TYPE)):
            _, groups = series(fam, (by,))
            counters[key] = [
                {"label": g.labels[by], "rate": [_rate(r, dt) for r, dt in zip(rows, seconds, strict=True)]}
                for g, rows in groups
            ]
        _, batch = series(BATCH, ())
        _, confidence = series(CONFIDENCE, ())
        distribution = []
        if confidence:
            g, rows = confidence[0]
            totals = _sum_rows(rows) or [0.0] * (len(g.bounds) + 2)
            distribution = [
                {"le": _num(le), "count": _num(c)} for le, c in zip((*g.bounds, None), totals, strict=False)
            ]
        return {
            "model": name,
            "version": version,
            "step_s": k * h.step_s,
            "times": times,
            "stages": stages,
            **counters,
            "batch_size": _histogram_series(*batch[0], seconds) if batch else None,
            "confidence": _histogram_series(*confidence[0], seconds) if confidence else None,
            "confidence_distribution": distribution,
            "generation": _generation(series, seconds, since),
        }

    def resources(self) -> dict[str, Any]:
        """Every host and GPU meter: its source labels, the latest value and the values over time."""
        h = self.history
        meters = []
        for inst in RESOURCE_METERS:
            times, groups = h.query(family(inst), by=None)
            k = max(1, math.ceil(len(times) / MAX_POINTS))
            for g in groups:
                # a gauge's row is its value, so a downsampled point is the mean of the samples present
                out_t, rows = _downsample(times, g.rows, k)
                counts = _downsample(times, [[1.0] if r is not None else None for r in g.rows], k)[1]
                values = [_num(r[0] / c[0]) if r is not None else None for r, c in zip(rows, counts, strict=True)]
                latest = next((v for v in reversed(values) if v is not None), None)
                meters.append(
                    {"name": inst.prometheus_name, "unit": inst.unit, "description": inst.description,
                     "labels": g.labels, "latest": latest, "times": out_t, "values": values}
                )  # fmt: skip
        return {"meters": meters}
