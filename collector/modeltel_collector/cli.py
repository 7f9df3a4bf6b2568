"""``modeltel collector``: run the collector until SIGTERM/SIGINT, then drain and exit 0."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from modeltel_collector.collector import Collector
from modeltel_collector.config import load


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modeltel collector", description="OTLP collector for Prometheus and traces.")
    p.add_argument("--otlp-http", metavar="HOST:PORT", help="OTLP/HTTP receiver (default 127.0.0.1:4318; '' disables)")
    p.add_argument("--otlp-grpc", metavar="HOST:PORT", help="OTLP/gRPC receiver (default 127.0.0.1:4317; '' disables)")
    p.add_argument("--listen", metavar="HOST:PORT", help="/metrics, /healthz, traces, console (default 127.0.0.1:9464)")
    p.add_argument("--config", metavar="FILE", help="TOML config file (also MODELTEL_COLLECTOR_CONFIG)")
    p.add_argument("--trace-db", metavar="PATH", help="SQLite trace store (default: temporary)")
    p.add_argument("--forward-endpoint", metavar="URL", help="forward everything to this OTLP/HTTP endpoint")
    p.add_argument("--staleness-s", type=float, help="forget a silent source's series after this many seconds")
    p.add_argument("--ready-file", metavar="PATH", help="write the bound ports as JSON here once listening")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "ready_file")}
    try:
        cfg = load(args.config, overrides=overrides)
        collector = Collector(cfg).start()
    except (OSError, ValueError) as e:
        print(f"modeltel collector: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ready = json.dumps({"ports": collector.ports, "urls": collector.urls})
    print(f"modeltel collector ready {ready}", flush=True)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(ready)
    while not stop.wait(0.5):
        pass
    collector.stop()
    return 0
