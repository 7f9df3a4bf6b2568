"""ML analytics: statistical degradation detectors, the streaming engine that runs them, log replay.

Detectors (``detectors``) are pure functions of windows of data, the engine (``engine``) cuts a stream of
timestamped predictions into those windows per model and version, so the collector and ``modeltel detect
replay`` run the very same code. scipy is imported lazily (the ``analytics`` extra): a collector that never
runs a detector does not need it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .live import AnalyticsDeps, LiveAnalytics

log = logging.getLogger(__name__)


BACKLOG = 100_000  # prediction and feedback facts waiting for the detectors' next poll (~25 MB at most)


def available() -> bool:
    """Whether the ``analytics`` extra (numpy, scipy) is installed; checked once, when a collector is built.

    Everything numeric is imported lazily, so a collector installed without ``modeltel[analytics]`` imports
    and runs as before, and its ingest collects nothing for detectors that will not run.
    """
    try:
        import numpy  # noqa: F401
        import scipy  # noqa: F401
    except ImportError:
        return False
    return True


def attach(deps: AnalyticsDeps) -> LiveAnalytics | None:
    """Start the detectors on a starting collector's parts; None when they are off (``analytics = false``),
    and None with one log line without the analytics extra."""
    if deps.facts is None:
        if deps.config.analytics:
            log.warning("degradation detectors off: install them with pip install 'modeltel[analytics]'")
        return None
    from .live import start_on

    return start_on(deps)
