"""A closed-loop load generator for the example servers: N clients, each with a keep-alive connection.

``python -m modeltel.examples.loadgen --url http://127.0.0.1:8000/predict --duration 20 --concurrency 8``.
A small share of requests (``ERROR_FRACTION``) carry an invalid row so the error counters have something
to count.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ERROR_FRACTION = 0.02  # share of requests with a malformed row, rejected by the server's preprocessing
GOOD_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.8, 5.1, 1.5]]


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int) -> None:
        with self.lock:
            self.sent += 1
            self.status_counts[status] = self.status_counts.get(status, 0) + 1
            if 200 <= status < 300:
                self.ok += 1
            else:
                self.failed += 1


def _payload(rng: random.Random, error_fraction: float) -> bytes:
    rows = [list(rng.choice(GOOD_ROWS)) for _ in range(rng.randint(1, 8))]
    if rng.random() < error_fraction:
        rows[0] = [1.0, 2.0]  # wrong width: rejected in preprocessing
    return json.dumps({"features": rows}).encode()


def _client(
    url: str,
    deadline: float,
    error_fraction: float,
    seed: int,
    result: LoadResult,
    period: float,
    stop: threading.Event,
) -> None:
    parts = urlsplit(url)
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    next_at = time.monotonic() + rng.random() * period
    while time.monotonic() < deadline and not stop.is_set():
        if period:  # open loop: one request per period, whatever the latency (up to the period)
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += period
        try:
            conn.request("POST", parts.path, _payload(rng, error_fraction), {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            result.add(response.status)
        except (OSError, http.client.HTTPException):
            result.add(0)
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.close()


def drive(
    url: str,
    duration: float = 20.0,
    concurrency: int = 8,
    error_fraction: float = ERROR_FRACTION,
    progress: Callable[[float, LoadResult], None] | None = None,
    rate: float = 0.0,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Send requests from ``concurrency`` clients for ``duration`` seconds; returns what the clients saw.

    ``rate`` (requests per second, all clients together) paces the clients, so a slower server gets the
    same load rather than less; 0 sends as fast as the server answers. Setting ``stop`` ends it early.
    """
    stop = stop or threading.Event()
    result = LoadResult()
    start = time.monotonic()
    deadline = start + duration
    period = concurrency / rate if rate else 0.0
    threads = [
        threading.Thread(target=_client, args=(url, deadline, error_fraction, i, result, period, stop), daemon=True)
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.25)
        if progress is not None:
            progress(min(1.0, (time.monotonic() - start) / duration), result)
    return result


def progress_bar(fraction: float, result: LoadResult, width: int = 30) -> None:
    filled = int(fraction * width)
    sys.stderr.write(f"\r  load [{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}  {result.sent} requests")
    sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/predict")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--error-fraction", type=float, default=ERROR_FRACTION)
    args = parser.parse_args()
    result = drive(args.url, args.duration, args.concurrency, args.error_fraction, progress_bar)
    sys.stderr.write("\n")
    print(f"sent {result.sent}, ok {result.ok}, failed {result.failed}, by status {result.status_counts}")


if __name__ == "__main__":
    main()
