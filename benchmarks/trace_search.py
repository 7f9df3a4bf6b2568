"""What a trace search costs on a big trace store: a Jaeger search by service, one with a tag filter, and
the trace API's searches (by service; by model across services, sorted by duration), plus what opening
the store costs (the first open of an older store builds the ``(service, start_ns)`` index).

The store is filled once at ``--path`` (rows written straight into SQLite, each a request of
``--spans-per-row`` spans of one of ``--services`` services), and reused by later runs, so the code
before and after a change can be timed on the same file:

    PYTHONPATH=<old tree>/sdk:<old tree>/collector python benchmarks/trace_search.py --path /tmp/s.db
    PYTHONPATH=<new tree>/sdk:<new tree>/collector python benchmarks/trace_search.py --path /tmp/s.db

Opening a store trims its list of services to ``--max-services`` (the collector's ``trace_max_services``):
``--services 10000 --spans 10000 --spans-per-row 1 --max-services 10000`` times a search without a service
over 10 000 services, what the bound prevents (docs/collector-hardening.md).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import time

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span

from modeltel_collector.serve import jaeger
from modeltel_collector.stats import Stats
from modeltel_collector.store import spanfile, spanservices
from modeltel_collector.store.spanrows import INSERT
from modeltel_collector.store.spans import SpanStore, TraceRow


def _data(trace_id: bytes, spans: int, start: int, pad: int) -> bytes:
    kvs = (("model.name", "m"), ("http.route", "/p"), ("input", "x" * pad))  # pad: a prompt, a payload
    attrs = [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in kvs]
    span = Span(trace_id=trace_id, name="predict", start_time_unix_nano=start, end_time_unix_nano=start + 10**6)
    span.attributes.extend(attrs)
    rows = []
    for i in range(spans):
        rows.append(Span())
        rows[-1].CopyFrom(span)
        rows[-1].span_id, rows[-1].name = os.urandom(8), "predict" if i == 0 else f"stage{i}"
    return ScopeSpans(spans=rows).SerializeToString()


def fill(path: str, spans: int, services: int, per_row: int, pad: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(spanfile.SCHEMA.split("CREATE INDEX")[0])  # the table alone: indexes come after
    conn.execute("CREATE INDEX IF NOT EXISTS traces_trace ON traces (trace_id)")
    conn.execute("CREATE TABLE IF NOT EXISTS writes (max_rowid INTEGER PRIMARY KEY, written_ns INTEGER, spans INTEGER)")
    conn.execute("CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY, written_ns INTEGER)")
    now, rows = time.time_ns(), spans // per_row
    conn.execute("BEGIN")
    for chunk in range(0, rows, 10_000):
        batch = []
        for i in range(chunk, min(rows, chunk + 10_000)):
            tid, start = os.urandom(16), now - (rows - i) * 1000
            svc, model = f"svc{i % services}", f"model{i % 7}"
            row = TraceRow(tid, svc, model, ",predict,", ",SERVER,", "predict", 1, start, 10**6 + i % 997, b"", 0, b"")
            batch.append(
                tuple(row._replace(span_id=os.urandom(8), span_count=per_row, data=_data(tid, per_row, start, pad)))
            )
        conn.executemany(INSERT, batch)
        conn.execute("INSERT INTO writes VALUES (?, ?, ?)", (chunk + len(batch), now, len(batch) * per_row))
    conn.executemany("INSERT OR REPLACE INTO services VALUES (?, ?)", ((f"svc{k}", now) for k in range(services)))
    conn.execute("COMMIT")
    conn.close()


def _time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", default="/tmp/modeltel-trace-search.db")
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--spans-per-row", type=int, default=4)
    ap.add_argument("--span-bytes", type=int, default=1500, help="an attribute this long on each span")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--max-services", type=int, default=spanservices.MAX_SERVICES,
        help="the store's service bound; opening trims the file's list to it, so measure a longer list with a"
        " larger bound",
    )  # fmt: skip
    args = ap.parse_args()
    if not os.path.exists(args.path):
        t0 = time.perf_counter()
        fill(args.path, args.spans, args.services, args.spans_per_row, args.span_bytes)
        print(f"filled {args.path}: {args.spans} spans in {time.perf_counter() - t0:.1f} s")
    store = SpanStore(args.path, max_spans=10 * args.spans, max_age_s=1e9, max_services=args.max_services)
    t0 = time.perf_counter()
    store.open()
    print(f"open (first open of an older store builds the index): {time.perf_counter() - t0:.2f} s")
    services = len(store.services())  # after opening: it trims the list to max_services
    print(f"store {os.path.getsize(args.path) / 2**20:.0f} MiB, {services} services listed")

    def jaeger_search(**params: str) -> list:
        reader = jaeger._Reader(store, 10_000, Stats())
        return jaeger._search(reader, {k: [v] for k, v in params.items()})

    cases = {
        "jaeger search service=svc7 limit=20": lambda: jaeger_search(service="svc7", limit="20"),
        "jaeger search service=svc7 tag=http.route:/x": lambda: jaeger_search(service="svc7", tag="http.route:/x"),
        "api search service=svc7 limit=20": lambda: store.search(service="svc7", limit=20),
        "api search model=model3 sort=duration": lambda: store.search(model="model3", sort="duration", limit=20),
    }
    for name, fn in cases.items():
        seconds, _ = _time(fn, args.repeat)
        print(f"{name:50s} {seconds * 1000:9.1f} ms")
    store.close()


if __name__ == "__main__":
    main()
