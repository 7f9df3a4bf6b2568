"""The ingest queue between receivers and processing.

Receivers validate (decode) a request, then ``submit`` its protobuf bytes; a single worker decodes it again,
merges metrics, derives span metrics and hands rows to the span store. Queueing bytes rather than decoded
messages (3-5x larger) makes the bound exact: when it is full ``submit`` raises ``Overloaded`` and the
receiver answers 429 / RESOURCE_EXHAUSTED, so what was accepted is never dropped, and ``close`` drains
the queue before the process exits. The second decode costs under 1 us per span.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from modeltel_collector.config import Config
from modeltel_collector.facts import Fact, within_caps
from modeltel_collector.forward.forwarder import Forwarder
from modeltel_collector.otlp import METRICS, REQUEST_TYPES, TRACES
from modeltel_collector.process.spanmetrics import process_traces
from modeltel_collector.stats import Stats
from modeltel_collector.store.metrics import MetricStore
from modeltel_collector.store.spans import SpanStore

_log = logging.getLogger("modeltel_collector")


class Overloaded(Exception):
    """The ingest queue is full (or shutting down); the client should retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"ingest queue full, retry after {retry_after_s:g}s")
        self.retry_after_s = retry_after_s


class Reservation:
    """Bytes a request holds while it is read, decompressed and decoded; returned when the block ends.

    ``grow`` raises ``Overloaded`` when the collector-wide in-flight budget is spent, so many large
    concurrent requests are answered 429 / RESOURCE_EXHAUSTED instead of all being held in memory at once.
    """

    def __init__(self, owner: IngestQueue) -> None:
        self._owner = owner
        self.bytes = 0

    def grow(self, n: int) -> None:
        self._owner._reserve(n, self.bytes)
        self.bytes += n

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self._owner._release(self.bytes)
        self.bytes = 0


class IngestQueue:
    """The bounded queue of accepted requests and the one worker thread that processes them in order."""

    def __init__(
        self,
        config: Config,
        metrics: MetricStore,
        spans: SpanStore,
        stats: Stats,
        *,
        forwarder: Forwarder | None = None,
        facts: deque[Fact] | None = None,
    ) -> None:
        """Bounds and retry hint from ``config`` (``max_queue_bytes``, ``max_inflight_bytes``,
        ``max_unwritten_s``, ``retry_after_s``); span metrics derived when ``derive_span_metrics``."""
        self.metrics = metrics
        self.facts = facts  # the detectors' input (bounded: when they fall behind, the oldest go, counted)
        self.spans = spans
        self.stats = stats
        self.forwarder = forwarder
        self.max_queue_bytes = config.max_queue_bytes
        self.derive = config.derive_span_metrics
        self.retry_after_s = config.retry_after_s
        self.max_inflight_bytes = config.max_inflight_bytes
        self.max_unwritten_s = config.max_unwritten_s
        self._since: deque[float] = deque()  # when each queued request was accepted (monotonic)
        self._busy_since = 0.0
        self.inflight_bytes = 0
        self._inflight_lock = threading.Lock()
        self._queue: deque[tuple[str, bytes, str]] = deque()
        self.queued_bytes = 0
        self._busy = False
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="modeltel-ingest", daemon=True)
        stats.gauge("modeltel_collector_queue_depth", "Export requests waiting in the ingest queue.", self.depth)
        stats.gauge(
            "modeltel_collector_queue_bytes",
            "Bytes (wire size) waiting in the ingest queue.",
            lambda: self.queued_bytes,
        )
        stats.gauge("modeltel_collector_queue_limit_bytes", "Ingest queue bound.", lambda: self.max_queue_bytes)
        stats.gauge(
            "modeltel_collector_unwritten_seconds",
            "Age of the oldest accepted data not yet written (what a SIGKILL would lose).",
            self.unwritten_s,
        )
        stats.gauge(
            "modeltel_collector_inflight_bytes",
            "Bytes held by requests being read, decompressed or decoded.",
            lambda: self.inflight_bytes,
        )

    def start(self) -> None:
        self._thread.start()

    def depth(self) -> int:
        return len(self._queue)

    def reserve(self, size: int = 0) -> Reservation:
        """A ``Reservation`` of ``size`` in-flight bytes (raises ``Overloaded`` when the budget is spent)."""
        r = Reservation(self)
        if size:
            r.grow(size)
        return r

    def _reserve(self, n: int, own: int) -> None:
        with self._inflight_lock:
            others = self.inflight_bytes - own  # a request alone may exceed the budget: it must get through
            if self._closed or (others > 0 and self.inflight_bytes + n > self.max_inflight_bytes):
                raise Overloaded(self.retry_after_s)
            self.inflight_bytes += n

    def _release(self, n: int) -> None:
        with self._inflight_lock:
            self.inflight_bytes -= n

    def unwritten_s(self) -> float:
        """Age of the oldest accepted data not yet merged and written: what a SIGKILL now would lose."""
        with self._cond:
            queued = self._since[0] if self._since else 0.0
            times = [t for t in (queued, self._busy_since, self.spans.oldest_pending()) if t]
        return time.monotonic() - min(times) if times else 0.0

    def check_room(self, size: int) -> None:
        """Raise ``Overloaded`` before decoding a request that could not be queued anyway.

        Besides the byte bound, data accepted more than ``max_unwritten_s`` ago and still not written
        refuses new data: that bounds, in seconds, what acknowledged data a SIGKILL can lose.
        """
        if self._full(size) or self.unwritten_s() > self.max_unwritten_s:
            raise Overloaded(self.retry_after_s)

    def _full(self, size: int) -> bool:
        """Whether ``size`` more bytes would go past the queue's bound (a request alone always fits)."""
        return self._closed or (bool(self._queue) and self.queued_bytes + size > self.max_queue_bytes)

    def points_over_limit(self, signal: str, request) -> int:
        """Metric points of ``request`` the store's series limit will refuse (for partial_success)."""
        return self.metrics.points_over_limit(request) if signal == METRICS else 0

    def submit(self, signal: str, body: bytes, protocol: str) -> None:
        """Accept a validated, protobuf-encoded request or raise ``Overloaded``; accepted data is processed."""
        with self._cond:
            if self._full(len(body)):
                raise Overloaded(self.retry_after_s)
            self._queue.append((signal, body, protocol))
            self._since.append(time.monotonic())
            self.queued_bytes += len(body)
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything submitted so far is processed (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.idle() and not self.spans.pending():
                return True
            time.sleep(0.005)
        return False

    def close(self, timeout_s: float | None = None) -> None:
        """Refuse new data, process everything queued (for at most ``timeout_s``), stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        last_expire = time.monotonic()
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(1.0)
                if not self._queue:
                    if self._closed:
                        return
                    item = None
                else:
                    item = self._queue.popleft()
                    self._busy, self._busy_since = True, self._since.popleft()
            if item is not None:
                try:
                    self._process(*item)
                except Exception:  # a bug on odd-but-valid data must not stop the worker (and wedge ingest)
                    _log.exception("modeltel collector: failed to process a %s request; dropped", item[0])
                    self.stats.inc("modeltel_collector_dropped", f"{item[0]}_processing_error")
                finally:
                    with self._cond:
                        self.queued_bytes -= len(item[1])
                        self._busy, self._busy_since = False, 0.0
            if time.monotonic() - last_expire > 1.0:
                last_expire = time.monotonic()
                self.metrics.expire()

    def _hand_over(self, facts: list[Fact]) -> None:
        facts, cut = within_caps(facts)
        if cut:
            self.stats.inc("modeltel_collector_dropped", "analytics_text_too_long", cut)
        bound = self.facts.maxlen
        overflow = 0 if bound is None else len(self.facts) + len(facts) - bound
        if overflow > 0:
            self.stats.inc("modeltel_collector_dropped", "analytics_backlog", overflow)
        self.facts.extend(facts)  # deque.extend: safe against the analytics thread's popleft

    def _process(self, signal: str, body: bytes, protocol: str) -> None:
        request = REQUEST_TYPES[signal].FromString(body)
        if signal == TRACES:
            facts: list[Fact] | None = None if self.facts is None else []
            rows, invalid = process_traces(request, self.metrics, self.derive, facts=facts)
            if facts:
                self._hand_over(facts)
            self.spans.put(rows, accepted=self._busy_since)  # still unwritten since it was acknowledged
            self.stats.inc("modeltel_collector_received_spans", protocol, sum(r.span_count for r in rows))
            if invalid:
                self.stats.inc("modeltel_collector_dropped", "spans_invalid_id", invalid)
        elif signal == METRICS:
            result = self.metrics.ingest(request)
            self.stats.inc("modeltel_collector_received_metric_points", protocol, result.points)
            if result.rejected:
                self.stats.inc("modeltel_collector_dropped", "metric_points", result.rejected)
            for family, n in result.unfit.items():
                self.stats.inc("modeltel_collector_unfit_latency_points", family, n)
            for warning in result.warnings:
                _log.warning("modeltel collector: %s", warning)
        if self.forwarder is not None:
            self.forwarder.submit(signal, body)
