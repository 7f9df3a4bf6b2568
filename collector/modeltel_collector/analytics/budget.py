"""Which model versions the detectors analyse: at most ``max_models`` at once, each forgotten when it stops.

Why a budget of their own: each analysed model version costs its detector state (bounded by the engine's
settings, about 0.3 MB) and up to ``SERIES_PER_VERSION`` gauges on /metrics. Unbounded, a client sending
thousands of distinct model names filled the applications' ``max_series`` with the detectors' gauges,
after which every application's new series was refused until a restart. So the detectors' gauges are
published outside ``max_series`` (``MetricStore.set_gauges``) under this budget, and a model version
beyond it is not analysed: its facts are counted, it is named in /healthz (the latest ten) and in the log
(the first ten, then every thousandth: a flood of names does not flood the log), and it is admitted as
soon as a silent one is forgotten (after ``staleness_s`` without data, like the store's series).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from .settings import CHECKS

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (model name, model version)
# online accuracy, baseline stale and age; per check: detected (x2 severities), p-value, statistic, effect size
SERIES_PER_VERSION = 3 + 5 * len(CHECKS)
_REMEMBERED = 1_000  # refused model versions remembered (so each is logged once), at most 2 x 256 chars each
_NAMED = 10  # the latest refused model versions /healthz names


class ModelBudget:
    """Admits model versions up to ``max_models``; ``stale`` lists those silent for ``staleness_s``."""

    def __init__(self, max_models: int, staleness_s: float) -> None:
        self.max_models, self.staleness_s = max_models, staleness_s
        self.last_seen: dict[Key, float] = {}  # the analysed model versions -> last fact's poll (wall clock)
        self.refused: OrderedDict[Key, None] = OrderedDict()  # recently refused, newest last (bounded)
        self.latest_refused: tuple[Key, ...] = ()  # replaced whole, so /healthz reads it from another thread
        self.refused_versions = 0  # distinct model versions refused (one already remembered is not re-counted)
        self.refused_facts = 0
        self.forgotten = 0  # model versions dropped for silence

    @property
    def max_series(self) -> int:
        """The detectors' gauges at most: their own budget, outside the store's ``max_series``."""
        return self.max_models * SERIES_PER_VERSION

    def admit(self, key: Key, now: float) -> bool:
        """Whether to analyse a fact of ``key`` seen at ``now``; refusals are counted, a new one logged once."""
        if key in self.last_seen or len(self.last_seen) < self.max_models:
            self.last_seen[key] = now
            return True
        self.refused_facts += 1
        if key in self.refused:
            self.refused.move_to_end(key)
            return False
        self.refused[key] = None
        self.refused_versions += 1
        self.latest_refused = (*self.latest_refused[1 - _NAMED :], key)
        if len(self.refused) > _REMEMBERED:
            self.refused.popitem(last=False)
        if self.refused_versions <= _NAMED or self.refused_versions % 1000 == 0:  # a flood logs a few lines
            log.warning(
                "degradation detectors: model %r version %r not analysed: %d model versions already are "
                "(analytics_max_models); %d refused so far",
                *key,
                self.max_models,
                self.refused_versions,
            )
        return False

    def stale(self, now: float) -> list[Key]:
        """Forget the model versions without a fact for ``staleness_s``; returns them (to drop their state)."""
        gone = [key for key, seen in self.last_seen.items() if now - seen > self.staleness_s]
        for key in gone:
            del self.last_seen[key]
        self.forgotten += len(gone)
        return gone

    def report(self) -> dict:
        """The budget for /healthz: how full, and the latest model versions refused, by name (read from
        the HTTP threads: only atomic reads of what the analytics thread writes)."""
        named = [{"model": m, "version": v} for m, v in self.latest_refused]
        return {
            "models": len(self.last_seen),
            "max_models": self.max_models,
            "refused_versions": self.refused_versions,
            "refused_facts": self.refused_facts,
            "refused_latest": named,
            "forgotten_versions": self.forgotten,
        }
