"""Generative models' checks on the engine's request windows: TTFT shift, TPOT shift, output-length drift.

A generation's time to first token, time per output token and output token count come with its
prediction (``facts.Prediction``, or a replayed log's optional columns) and are kept per bucket beside the
latencies, so each check runs on the requests' window, is due when ``latency_shift`` is, and resolves on
post-alarm buckets the same way. A model that sends none of them (not generative) runs none of these tests
and spends none of their false-alarm share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from modeltel import taxonomy as tx

from . import detectors as d
from .settings import Settings

# check -> (the per-request value it tests, the bucket and reference key, its detector)
FIELDS = {"ttft_shift": "ttft", "tpot_shift": "tpot", "output_length_drift": "output_tokens"}
_DETECTORS = {"ttft_shift": d.ttft_shift, "tpot_shift": d.tpot_shift, "output_length_drift": d.output_length_drift}
assert tuple(FIELDS) == tx.GENAI_DEGRADATION_CHECKS


def samples(buckets: Iterable, name: str) -> np.ndarray:
    """One value's samples over ``buckets`` (``Bucket.genai`` lists; a bucket without any has no key)."""
    return np.fromiter((x for b in buckets for x in b.genai.get(name, ())), float)


def test(check: str, reference: dict[str, np.ndarray] | None, buckets: list, settings: Settings, alpha: float):
    """``check``'s detector on ``buckets`` against the reference's sorted samples of the same value."""
    ref = (reference or {}).get(FIELDS[check], np.zeros(0))
    return _DETECTORS[check](ref, samples(buckets, FIELDS[check]), settings, alpha=alpha)


def tests(
    reference: dict[str, np.ndarray] | None, window: list, settings: Settings, alpha: Callable[[str], float]
) -> dict[str, d.Result]:
    """Every generative check whose value the window or the reference holds (``alpha(check)`` spends its
    budget only for those)."""
    out = {}
    for check, name in FIELDS.items():
        if len((reference or {}).get(name, ())) or any(name in b.genai for b in window):
            out[check] = test(check, reference, window, settings, alpha(check))
    return out
