"""``ServeDeps``: what the ``--listen`` server's handlers read of the collector's ``wiring.Deps``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from modeltel_collector.config import Config
from modeltel_collector.stats import Stats
from modeltel_collector.store.history import MetricHistory
from modeltel_collector.store.metrics import MetricStore
from modeltel_collector.store.spans import SpanStore


class ServeDeps(Protocol):
    config: Config
    stats: Stats
    metrics: MetricStore
    spans: SpanStore
    history: MetricHistory | None  # None when the console is off
    api_slots: threading.BoundedSemaphore  # queries in progress (trace, Jaeger, console APIs)
    health: Callable[[], tuple[int, dict]]  # (HTTP status, document) for /healthz
    detections: Callable[[], list[dict] | None]  # None while the detectors are off
