"""What the detectors are fed: one named type per fact, produced by ingest and the metric store, read by
``analytics.live`` (a leaf both layers import).

Ingest builds a ``Prediction`` or a ``Feedback`` per span in its hot loop (``process.spanmetrics``), so
facts are NamedTuples: read by name, and built within noise of plain tuples' cost
(``benchmarks/analytics_cost.py``). ``Confidence``
is what the metric store's confidence histograms gained between two polls (they are not on spans).
Every fact has a ``time`` (seconds since the epoch): the engine takes them in that order.

Text a client chose (model names, prediction ids, predicted values, labels) is capped at ``MAX_TEXT``
characters before a fact is handed over (``within_caps``): the hand-over, the detectors' pending facts and
the label joiner's tables hold facts by the hundred thousand, so their bound in entries is a bound in bytes
only if each entry is. A longer id is refused rather than cut (two ids cut to one prefix would join the
wrong label), counted by the caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # numpy is the analytics extra's: ingest builds facts without it
    import numpy as np


class Prediction(NamedTuple):
    """A prediction span: when it ended, its model, how long it took, whether it failed, and what a later
    feedback span joins it by (its prediction id and predicted value, when the app set them). A generation
    adds its time to first token, time per output token and output tokens (None where the span has none:
    not a generation, no token came, or a single one), for the TTFT/TPOT/output-length detectors."""

    time: float
    model: str
    version: str
    latency_s: float
    ok: bool
    prediction_id: str | None
    value: str | None
    ttft_s: float | None = None
    tpot_s: float | None = None
    output_tokens: int | None = None


class Feedback(NamedTuple):
    """A feedback span (from any process, often a labelling job): the prediction it is about, and whether
    that was right, or the true label to compare the predicted value with."""

    time: float
    prediction_id: str
    correct: bool | None
    label: str | None


class Confidence(NamedTuple):
    """What one model version's confidence histogram gained since the last poll, per bucket of
    ``detectors.CONFIDENCE_BOUNDS``, stamped with the poll's time."""

    time: float
    model: str
    version: str
    counts: np.ndarray


Fact = Prediction | Feedback | Confidence
MAX_TEXT = 256  # characters of a model name, version, prediction id, predicted value or label in a fact


def within_caps(facts: list[Prediction | Feedback]) -> tuple[list[Prediction | Feedback], int]:
    """``facts`` with no text over ``MAX_TEXT``, and how many were refused or cut: a prediction whose model
    name or version is longer is left out (not analysed); one whose id or value is longer is kept without
    them (its latency and status still count; its label cannot join); such feedback is left out."""
    out, cut = [], 0
    for f in facts:
        if isinstance(f, Prediction):
            if len(f.model) > MAX_TEXT or len(f.version) > MAX_TEXT:
                cut += 1
                continue
            if len(f.prediction_id or "") > MAX_TEXT or len(f.value or "") > MAX_TEXT:
                cut += 1
                f = f._replace(prediction_id=None, value=None)
        elif len(f.prediction_id) > MAX_TEXT or len(f.label or "") > MAX_TEXT:
            cut += 1
            continue
        out.append(f)
    return out, cut
