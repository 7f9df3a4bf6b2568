"""``Deps``: what the collector's receivers, handlers and detectors share, as one typed object.

``Collector.__init__`` builds every part once and hands this object on: the HTTP servers keep it as
``server.deps`` for their handlers, the gRPC receiver and the detectors take it whole. Each layer names
the part it reads as a Protocol of its own (``receive.otlp_http.IngestDeps``, ``serve.deps.ServeDeps``,
``analytics.live.AnalyticsDeps``), which ``Deps`` satisfies, so layers never import this module (it
imports them all) and a reader or a type checker can still follow a request to the object serving it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from modeltel_collector.config import Config
from modeltel_collector.facts import Fact
from modeltel_collector.process.ingest import IngestQueue
from modeltel_collector.stats import Stats
from modeltel_collector.store.history import MetricHistory
from modeltel_collector.store.metrics import MetricStore
from modeltel_collector.store.spans import SpanStore


@dataclass(kw_only=True, slots=True)
class Deps:
    config: Config
    stats: Stats
    metrics: MetricStore
    spans: SpanStore
    ingest: IngestQueue
    facts: deque[Fact] | None  # ingest's hand-over to the detectors; None when they are off
    history: MetricHistory | None  # the console's; None when the console is off
    stopped: threading.Event  # set once the collector begins to stop
    api_slots: threading.BoundedSemaphore  # queries in progress (trace, Jaeger, console): half the connections
    health: Callable[[], tuple[int, dict]]  # ``Collector.health``: (HTTP status, document) for /healthz
    detections: Callable[[], list[dict] | None]  # ``Collector.detections``: None while the detectors are off
