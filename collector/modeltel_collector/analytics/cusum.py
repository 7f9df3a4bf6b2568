"""The accuracy CUSUM's threshold from the false-alarm budget, exactly, for the increments it really adds.

Page's CUSUM over labels adds ``+a`` for a wrong answer and ``-b`` for a right one (the Bernoulli
log-likelihood ratio of accuracy ``p0 - shift`` against ``p0``) and alarms when it exceeds ``h``. Its
in-control average run length (ARL, in labels) is what the false-alarm budget fixes: a model that gets
``L`` labels a day may raise ``budget`` chance alarms a day, so ``ARL = L / budget``. ``h = ln(ARL)`` is
only Wald's bound (ARL >= e^h, loose by a factor that depends on ``p0``); instead the increments are
rounded to integer multiples of one unit (``+A``, ``-B``: the ratio a/b kept to within 1 %) and the
ARL of that integer chain is solved exactly (Brook and Evans' Markov chain: one sparse linear system),
so the detector that runs is the one whose ARL was computed. ``threshold`` searches the smallest ``h``
whose ARL reaches the target; results are cached per (p0, shift, target) rounded conservatively.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_UNITS = 32  # the smaller increment in units: the ratio a/b is kept to within 1/64


@dataclass(frozen=True)
class Increments:
    """Integer increments (wrong: +wrong, right: -right) of ``unit`` nats each."""

    wrong: int
    right: int
    unit: float

    def llr(self, correct: bool) -> float:
        return (-self.right if correct else self.wrong) * self.unit


@lru_cache(maxsize=1024)
def increments(p0: float, shift: float) -> Increments:
    """The Bernoulli log-likelihood ratio of accuracy ``p0 - shift`` vs ``p0``, on an integer lattice."""
    p0 = min(max(p0, 1e-3), 1 - 1e-3)
    p1 = min(max(p0 - shift, 1e-4), p0 - 1e-4)
    a, b = math.log((1 - p1) / (1 - p0)), -math.log(p1 / p0)
    if a >= b:
        right = _UNITS
        return Increments(round(_UNITS * a / b), right, b / right)
    return Increments(_UNITS, round(_UNITS * b / a), a / _UNITS)


def arl(p_down: float, up: int, down: int, h_units: int) -> float:
    """Average steps to the first ``S > h_units`` from 0, stepping ``+up`` or, with probability ``p_down``,
    ``-down`` (floored at 0): ``L(s) = 1 + (1 - p_down) L(s + up) + p_down L(max(0, s - down))``, L = 0
    above h. The accuracy CUSUM under accuracy p0: ``arl(p0, wrong, right, h)``."""
    from scipy.sparse import csr_matrix, identity
    from scipy.sparse.linalg import spsolve

    n = h_units + 1
    s = np.arange(n)
    to_up, to_down = s + up, np.maximum(0, s - down)
    keep = to_up < n
    rows = np.concatenate([s[keep], s])
    cols = np.concatenate([to_up[keep], to_down])
    vals = np.concatenate([np.full(int(keep.sum()), 1 - p_down), np.full(n, p_down)])
    chain = csr_matrix((vals, (rows, cols)), shape=(n, n))
    return float(spsolve((identity(n, format="csr") - chain).tocsc(), np.ones(n))[0])


_SOLVED: dict[tuple[float, int, int], dict[int, float]] = {}  # chain -> {h: log ARL} already solved


def _log_arl(p_down: float, up: int, down: int, h: int) -> float:
    known = _SOLVED.setdefault((p_down, up, down), {})
    if h not in known:
        if len(known) > 256:  # bounded: a rolling reference's p0 wanders over a few grid points only
            known.clear()
        known[h] = math.log(arl(p_down, up, down, h))
    return known[h]


@lru_cache(maxsize=512)
def _threshold_units(p_down: float, up: int, down: int, target: float) -> int:
    """Secant steps on log ARL (nearly linear in h) from the two solved points nearest the goal, then the
    exact boundary to within a quarter step. A new target of a chain already solved costs one or two solves."""
    goal = math.log(target)
    known = _SOLVED.get((p_down, up, down), {})
    near = sorted(known.items(), key=lambda hy: abs(hy[1] - goal))[:2]
    (h0, y0), (h1, y1) = near if len(near) == 2 else ((0, 0.0), (4 * up, _log_arl(p_down, up, down, 4 * up)))
    for _ in range(8):
        if abs(y1 - goal) < 0.01 or y1 == y0:
            break
        guess = h1 + (goal - y1) * (h1 - h0) / (y1 - y0)
        h0, y0, h1 = h1, y1, min(max(1, round(guess)), 2 * max(h0, h1) + 4 * up)  # never a runaway step
        y1 = _log_arl(p_down, up, down, h1)
    step = max(1, min(up, down) // 4)
    while _log_arl(p_down, up, down, h1) < goal:
        h1 += step
    while h1 > step and _log_arl(p_down, up, down, h1 - step) >= goal:
        h1 -= step
    return h1


def rounded_target(target_arl: float) -> float:
    """Up to the next step of 1.5x, so a changing label rate reuses the cached solution (each new target costs
    a few sparse solves) and never gets a lower threshold than asked; at most 0.4 nats more than needed."""
    return math.exp(math.ceil(math.log(max(target_arl, 2.0)) / math.log(1.5) - 1e-9) * math.log(1.5))


def threshold(p0: float, shift: float, target_arl: float) -> float:
    """The smallest ``h`` (nats) whose in-control ARL is at least ``target_arl`` labels, for the CUSUM of
    ``increments(quantized(p0), shift)`` (``p0`` on a 0.001 grid: a rolling reference reuses the cache)."""
    p0 = quantized(p0)
    inc = increments(p0, shift)
    return _threshold_units(p0, inc.wrong, inc.right, rounded_target(target_arl)) * inc.unit


def reverse_threshold(p0: float, shift: float, target_arl: float) -> float:
    """The reverse CUSUM's ``h`` (it adds ``-llr``: evidence that accuracy is back at ``p0``): the smallest
    whose run length, while accuracy stays at ``p0 - shift``, is at least ``target_arl`` labels."""
    p0 = quantized(p0)
    inc = increments(p0, shift)
    p1 = p0 - shift
    return _threshold_units(1 - p1, inc.right, inc.wrong, rounded_target(target_arl)) * inc.unit


def quantized(p0: float) -> float:
    """``p0`` rounded down to a 0.001 grid inside (0, 1): the accuracy the increments and their threshold
    are built for. Down, because a CUSUM built for a higher accuracy than the true one drifts upwards and
    alarms far sooner than its computed run length; one built for a lower one only loses a little power."""
    return min(max(math.floor(p0 * 1000 + 1e-9) / 1000, 0.001), 0.999)
