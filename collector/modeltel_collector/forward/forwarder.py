"""Optional forwarding of everything received to a downstream OTLP/HTTP endpoint (otelcol, Tempo, Jaeger).

A bounded in-memory retry queue: when the downstream is slow or down, requests wait and are retried with
backoff; when the queue is full the oldest are dropped and counted, so ingestion never blocks on it.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
import urllib.parse
from collections import deque

from modeltel_collector.stats import Stats

_RETRYABLE = {429, 502, 503, 504}


class Forwarder:
    def __init__(
        self,
        endpoint: str,
        stats: Stats,
        headers: dict[str, str] | None = None,
        max_queue_bytes: int = 64 << 20,
        timeout_s: float = 10.0,
        max_retry_s: float = 300.0,
    ) -> None:
        url = urllib.parse.urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        self._https = url.scheme == "https"
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or (443 if self._https else 4318)
        self._base = url.path.rstrip("/")
        self._headers = {"Content-Type": "application/x-protobuf", **(headers or {})}
        self._stats = stats
        self._max_bytes = max_queue_bytes
        self._timeout = timeout_s
        self._max_retry_s = max_retry_s
        self._queue: deque[tuple[str, bytes, float]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="modeltel-forwarder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def depth(self) -> int:
        return len(self._queue)

    def submit(self, signal: str, body: bytes) -> None:
        """Queue one protobuf-encoded export request; drops the oldest queued ones when over the bound."""
        with self._cond:
            self._queue.append((signal, body, time.monotonic()))
            self._bytes += len(body)
            while self._bytes > self._max_bytes and len(self._queue) > 1:
                old_signal, old, _ = self._queue.popleft()
                self._bytes -= len(old)
                self._stats.inc("modeltel_collector_dropped", f"forward_{old_signal}")
            self._cond.notify()

    def close(self, flush_timeout_s: float = 5.0) -> None:
        """Try to send what is queued for up to ``flush_timeout_s``, then stop."""
        deadline = time.monotonic() + flush_timeout_s
        with self._cond:
            while self._queue and time.monotonic() < deadline:
                self._cond.wait(0.05)
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()) + self._timeout)
        for signal, _, _ in self._queue:
            self._stats.inc("modeltel_collector_dropped", f"forward_{signal}")

    def _run(self) -> None:
        backoff = 0.1
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                signal, body, queued_at = self._queue[0]
            status = self._send(signal, body)
            with self._cond:
                ok = status is not None and 200 <= status < 300
                give_up = (status is not None and not ok and status not in _RETRYABLE) or (
                    time.monotonic() - queued_at > self._max_retry_s
                )
                if ok or give_up:
                    if self._queue and self._queue[0][1] is body:
                        self._queue.popleft()
                        self._bytes -= len(body)
                    self._stats.inc(
                        "modeltel_collector_forwarded_requests" if ok else "modeltel_collector_dropped",
                        signal if ok else f"forward_{signal}",
                    )
                    backoff = 0.1
                    self._cond.notify_all()
                    continue
                self._cond.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _send(self, signal: str, body: bytes) -> int | None:
        try:
            if self._conn is None:
                if self._https:
                    ctx = ssl.create_default_context()
                    self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=ctx)
                else:
                    self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._conn.request("POST", f"{self._base}/v1/{signal}", body=body, headers=self._headers)
            resp = self._conn.getresponse()
            resp.read()
            return resp.status
        except (OSError, http.client.HTTPException):
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return None
