"""What the detectors are fed: one named type per fact, produced by ingest and the metric store, read by
``analytics.live`` (a leaf both layers import).

Ingest builds a ``Prediction`` or a ``Feedback`` per span in its hot loop (``process.spanmetrics``), so
facts are NamedTuples: read by name, and built within noise of plain tuples' cost
(``benchmarks/analytics_cost.py``). ``Confidence``
is what the metric store's confidence histograms gained between two polls (they are not on spans).
Every fact has a ``time`` (seconds since the epoch): the engine takes them in that order.
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
