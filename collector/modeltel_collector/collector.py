"""``Collector``: wires receivers, the ingest queue, stores, forwarder and the API server; start/stop in-process.

Tests and the demo run it on port 0 and read ``.ports``/``.urls``; the CLI runs it until SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable

from modeltel_collector import analytics
from modeltel_collector.config import Config, split_address
from modeltel_collector.forward.forwarder import Forwarder
from modeltel_collector.httpbase import BoundedHTTPServer, ssl_context
from modeltel_collector.labelcap import LabelCap
from modeltel_collector.process.ingest import IngestQueue
from modeltel_collector.receive.otlp_grpc import GrpcReceiver
from modeltel_collector.receive.otlp_http import OTLPHandler
from modeltel_collector.serve.api import ApiHandler
from modeltel_collector.serve.console import CONSOLE_FAMILIES
from modeltel_collector.stats import Stats
from modeltel_collector.store.history import MetricHistory
from modeltel_collector.store.metrics import MetricStore
from modeltel_collector.store.spans import SpanStore
from modeltel_collector.wiring import Deps


class Collector:
    """The whole collector in one object. ``start()`` binds every configured address and returns at once."""

    def __init__(self, config: Config | None = None, **overrides) -> None:
        self.config = config or Config()
        self.config.update(overrides, "Collector()")
        cfg = self.config
        self.stats = Stats()
        cut = LabelCap(cfg.label_value_max_bytes, on_cut=self._truncated)
        self.metrics = MetricStore(
            cfg.staleness_s, cfg.max_series, label_cap=cut, derived_max_series=cfg.derived_max_series,
            on_overflow=lambda family, n: self.stats.inc("modeltel_collector_derived_overflow", family, n),
            on_refused=lambda n: self.stats.inc("modeltel_collector_dropped", "derived_series_limit", n),
        )  # fmt: skip
        self._tmpdir = None
        db = cfg.trace_db
        if not db:
            self._tmpdir = tempfile.mkdtemp(prefix="modeltel-collector-")
            db = os.path.join(self._tmpdir, "traces.db")
        self.spans = SpanStore(
            db,
            cfg.trace_max_age_s,
            cfg.trace_max_spans,
            self.stats,
            cfg.trace_queue_bytes,
            max_wal_bytes=cfg.trace_wal_max_bytes,
            search_max_rows=cfg.trace_search_max_rows,
            max_services=cfg.trace_max_services,
        )
        self.forwarder = (
            Forwarder(cfg.forward_endpoint, self.stats, cfg.forward_headers, cfg.forward_queue_bytes)
            if cfg.forward_endpoint
            else None
        )
        # what ingest hands the detectors; None (nothing collected) when they are off or not installed
        self.facts = deque(maxlen=analytics.BACKLOG) if cfg.analytics and analytics.available() else None
        self.pipeline = IngestQueue(
            cfg, self.metrics, self.spans, self.stats, forwarder=self.forwarder, facts=self.facts
        )
        self.stats.gauge("modeltel_collector_series", "Prometheus series held.", lambda: self.metrics.n_series)
        self.stats.gauge("modeltel_collector_stored_spans", "Spans in the trace store.", lambda: self.spans.count)
        self.stats.gauge(
            "modeltel_collector_trace_wal_bytes",
            "Bytes of the trace store's write-ahead log (truncated past trace_wal_max_bytes).",
            self.spans.wal_bytes,
        )
        self.stats.gauge(
            "modeltel_collector_trace_store_healthy",
            "1 while the trace store writes, 0 while it is degraded (disk full, I/O error).",
            lambda: 0 if self.spans.error else 1,
        )
        if self.forwarder is not None:
            self.stats.gauge(
                "modeltel_collector_forward_queue_depth", "Requests waiting to be forwarded.", self.forwarder.depth
            )
        self.history = (
            MetricHistory(
                self.metrics,
                CONSOLE_FAMILIES,
                history_s=cfg.console_history_s,
                step_s=cfg.console_step_s,
                max_tracks=cfg.console_max_tracks,
            )
            if cfg.console
            else None
        )
        self._http: dict[str, BoundedHTTPServer] = {}
        self._grpc: GrpcReceiver | None = None
        self.analytics = None  # the degradation detectors, once started (None without the analytics extra)
        self._threads: list[threading.Thread] = []
        self.ports: dict[str, int] = {}
        self.deps = Deps(
            config=cfg,
            stats=self.stats,
            metrics=self.metrics,
            spans=self.spans,
            ingest=self.pipeline,
            facts=self.facts,
            history=self.history,
            stopped=threading.Event(),
            api_slots=threading.BoundedSemaphore(max(1, cfg.max_connections // 2)),
            health=self.health,
            detections=self.detections,
        )

    def _serve_http(self, name: str, address: str, handler: type) -> None:
        ctx = ssl_context(self.config.tls_cert, self.config.tls_key)  # every listener: both take the token
        server = BoundedHTTPServer(
            split_address(address),
            handler,
            self.deps,
            max_connections=self.config.max_connections,
            read_timeout_s=self.config.read_timeout_s,
            ssl_context=ctx,
        )
        self._http[name] = server
        self.ports[name] = server.port
        t = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"modeltel-{name}", daemon=True
        )
        t.start()
        self._threads.append(t)

    def _truncated(self, what: str) -> None:
        self.stats.inc("modeltel_collector_truncated", what)

    def start(self) -> Collector:
        cfg = self.config
        self.spans.start()
        if self.forwarder is not None:
            self.forwarder.start()
        self.pipeline.start()
        if self.history is not None:
            self.history.start()
        self.analytics = analytics.attach(self.deps)
        try:
            if cfg.listen:
                self._bind("listen", lambda: self._serve_http("listen", cfg.listen, ApiHandler))
            if cfg.otlp_http:
                self._bind("otlp_http", lambda: self._serve_http("otlp_http", cfg.otlp_http, OTLPHandler))
            if cfg.otlp_grpc:
                self._bind("otlp_grpc", self._serve_grpc)
        except Exception:
            self.stop()
            raise
        return self

    def _bind(self, name: str, serve: Callable[[], None]) -> None:
        """Run ``serve``; a failure to bind names the option and the address (a port in use, mostly)."""
        address = getattr(self.config, name)
        try:
            serve()
        except OSError as e:
            reason = e.strerror or str(e)
            raise OSError(f"cannot listen on {address} (--{name.replace('_', '-')}): {reason}") from None

    def _serve_grpc(self) -> None:
        self._grpc = GrpcReceiver(self.deps)
        self._grpc.start()
        self.ports["otlp_grpc"] = self._grpc.port

    @property
    def urls(self) -> dict[str, str]:
        """Client-side addresses of the bound servers (http:// or https://, grpc as host:port)."""
        out = {}
        for name, addr in (
            ("listen", self.config.listen),
            ("otlp_http", self.config.otlp_http),
            ("otlp_grpc", self.config.otlp_grpc),
        ):
            if name in self.ports:
                host = split_address(addr)[0]
                host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
                scheme = "https" if self.config.tls_cert else "http"
                out[name] = (
                    f"{host}:{self.ports[name]}" if name == "otlp_grpc" else f"{scheme}://{host}:{self.ports[name]}"
                )
        return out

    def detections(self) -> list[dict] | None:
        """The degradation detectors' latest event per model and check; None when they are off."""
        return None if self.analytics is None else self.analytics.current()

    def healthy(self) -> bool:
        return not self.deps.stopped.is_set()

    def health(self) -> tuple[int, dict]:
        """(HTTP status, document) for /healthz: 503 once stopping; 200 but "degraded" while the store fails.

        While the trace store opens after a crash (``SpanStore.open``), ``trace_store`` is "opening": ingest
        is accepted and queued meanwhile, trace queries wait for it.
        A degraded store still answers 200: the collector keeps serving metrics and recovers by itself, so
        a liveness probe must not restart it (and lose its queue); monitors read ``status``.
        """
        doc = {"status": "ok", "queue_depth": self.pipeline.depth(), "trace_store": "ok"}
        if not self.spans.is_open and not self.spans.error:  # recovering after a crash (SpanStore.open)
            doc["trace_store"] = "opening"
        if self.spans.error:
            doc.update(status="degraded", trace_store=f"degraded: {self.spans.error}")
        if self.analytics is not None:
            doc["analytics"] = self.analytics.budget.report()
        if not self.healthy():
            doc["status"] = "unavailable"
            return 503, doc
        return 200, doc

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the trace store is open and everything accepted so far is merged and written (for tests
        and the demo)."""
        deadline = time.monotonic() + timeout_s
        return self.spans.wait_open(timeout_s) and self.pipeline.wait_idle(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Drain: stop accepting, process everything accepted, flush the stores and the forwarder."""
        if self.deps.stopped.is_set():
            return
        self.deps.stopped.set()
        grace = self.config.shutdown_timeout_s
        otlp_http = self._http.pop("otlp_http", None)
        if otlp_http is not None:
            otlp_http.shutdown()
            otlp_http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace / 2)
        self.pipeline.close(grace)
        if self.history is not None:
            self.history.close()
        self.spans.close(grace)
        if self.forwarder is not None:
            self.forwarder.close(grace / 2)
        for server in self._http.values():
            server.shutdown()
            server.server_close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
