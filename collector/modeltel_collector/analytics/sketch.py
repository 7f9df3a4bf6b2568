"""A mergeable quantile sketch (DDSketch's logarithmic buckets): baselines store latency in it.

Why a sketch: a baseline must summarise days of latencies in a few kilobytes, and two collectors' (or two
days') sketches must add up exactly; every quantile it returns is within ``relative_accuracy`` of a true
sample value.
"""

from __future__ import annotations

import math

import numpy as np


class Sketch:
    def __init__(self, relative_accuracy: float = 0.01) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError("relative_accuracy must be in (0, 1)")
        self.relative_accuracy = relative_accuracy
        self.gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self.bins: dict[int, int] = {}
        self.zeros = 0

    @property
    def count(self) -> int:
        return self.zeros + sum(self.bins.values())

    def add(self, values: np.ndarray) -> Sketch:
        values = np.asarray(values, float)
        positive = values[values > 0]
        self.zeros += int(np.sum(values <= 0))
        keys, counts = np.unique(np.ceil(np.log(positive) / math.log(self.gamma)).astype(int), return_counts=True)
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
            self.bins[k] = self.bins.get(k, 0) + c
        return self

    def merge(self, other: Sketch) -> Sketch:
        if other.gamma != self.gamma:
            raise ValueError("cannot merge sketches of different relative accuracy")
        for k, c in other.bins.items():
            self.bins[k] = self.bins.get(k, 0) + c
        self.zeros += other.zeros
        return self

    def quantiles(self, qs: np.ndarray) -> np.ndarray:
        """Values at the quantiles ``qs`` (0..1), each within the relative accuracy of a sample value."""
        keys = sorted(self.bins)
        values = np.array([0.0] + [2 * self.gamma**k / (self.gamma + 1) for k in keys])
        cumulative = np.cumsum([self.zeros] + [self.bins[k] for k in keys])
        if not cumulative[-1]:
            return np.full(len(np.atleast_1d(qs)), math.nan)
        ranks = np.asarray(qs, float) * (cumulative[-1] - 1)
        return values[np.searchsorted(cumulative, ranks, side="right")]

    def to_dict(self) -> dict:
        return {
            "relative_accuracy": self.relative_accuracy,
            "zero_count": self.zeros,
            "bins": {str(k): c for k, c in sorted(self.bins.items())},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Sketch:
        sketch = cls(float(data["relative_accuracy"]))
        sketch.zeros = int(data["zero_count"])
        sketch.bins = {int(k): int(c) for k, c in data["bins"].items()}
        if sketch.zeros < 0 or any(c < 0 for c in sketch.bins.values()):
            raise ValueError("negative count")
        return sketch
