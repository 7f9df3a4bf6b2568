"""The hand-over from span-derived series to an app's own, without a change in what /metrics shows.

When a resource starts sending a family itself, spans derive no more of it (``MetricStore`` would count
each request twice). Derived and own series of one request have the same labels (``process.spanmetrics``
takes the app's scope and counts a request as its SDK does), so the app's own series continues each
derived one. Its first export may still be behind the derived series (collected before the last spans
were derived): a count that went down would read as a counter reset to Prometheus. So each derived
series is held on show, and the app's own points are merged aside, until the app's own counts at least
as many; a held series the app never reaches (labels it does not send) goes after ``staleness_s``.
The functions here take a ``store.metrics.Family``; the store calls them under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeltel_collector.store.series import NumberSeries, Series

Labels = tuple[tuple[str, str], ...]


@dataclass
class Held:
    """A derived series kept on show after the hand-over, and the app's own merged aside meanwhile."""

    count: float  # the derived series' count (a counter's value)
    since: float  # the hand-over time
    own: Series | None = None

    def series_for(self, factory: type) -> Series:
        """Where the app's own point for these labels goes while they are held."""
        if not isinstance(self.own, factory):
            self.own = factory()
        return self.own


def count(s: Series) -> float:
    """How many a series has counted: a counter's value, a histogram's observations."""
    return s.value if isinstance(s, NumberSeries) else s.count


def hold_derived(fam: Any, rkey: tuple[str, str], now: float) -> None:
    """Hold the derived series of ``fam`` that resource ``rkey`` owns: it now sends the family itself."""
    for labels in [lb for lb in fam.derived if fam.owner.get(lb) == rkey]:
        fam.derived.discard(labels)
        fam.held[labels] = Held(count(fam.series[labels]), now)


def release(fam: Any, labels: Labels) -> None:
    """Show the app's own series for ``labels`` once it counts at least as many as the held one."""
    held = fam.held[labels]
    if held.own is not None and count(held.own) >= held.count:
        fam.series[labels] = held.own
        del fam.held[labels]


def expire_held(fam: Any, now: float, staleness_s: float) -> list[Labels]:
    """Give up on held series older than ``staleness_s``: the app's own takes their place where it has
    one, else the series goes; returns the labels of those that went (the store unlinks them)."""
    gone = []
    for labels in [lb for lb, h in fam.held.items() if now - h.since > staleness_s]:
        own = fam.held.pop(labels).own
        if own is not None:
            fam.series[labels] = own
        else:
            del fam.series[labels]
            gone.append(labels)
    return gone
