"""``modeltel collector``: run the collector until SIGTERM/SIGINT, then drain and exit 0."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import sys
import threading

from modeltel_collector.collector import Collector
from modeltel_collector.config import Config, load


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modeltel collector",
        description="Receive OTLP (HTTP and gRPC) from instrumented apps; serve /metrics for Prometheus (with "
        "exemplars), /healthz and the trace API. Options: defaults < --config TOML < MODELTEL_COLLECTOR_<OPTION> "
        "environment variables < flags.",
    )
    p.add_argument("--otlp-http", metavar="HOST:PORT", help="OTLP/HTTP receiver (default 127.0.0.1:4318; '' disables)")
    p.add_argument("--otlp-grpc", metavar="HOST:PORT", help="OTLP/gRPC receiver (default 127.0.0.1:4317; '' disables)")
    p.add_argument("--listen", metavar="HOST:PORT", help="/metrics, /healthz, traces, console (default 127.0.0.1:9464)")
    p.add_argument("--config", metavar="FILE", help="TOML config file (also MODELTEL_COLLECTOR_CONFIG; default: none)")
    p.add_argument("--trace-db", metavar="PATH", help="SQLite trace store (default: a temporary file)")
    p.add_argument(
        "--forward-endpoint", metavar="URL", help="also forward everything to this OTLP/HTTP endpoint (default: none)"
    )
    p.add_argument(
        "--staleness-s",
        metavar="SECONDS",
        type=float,
        help="forget a silent source's series after this long (default 300)",
    )
    p.add_argument(
        "--auth-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on the receivers, the trace API and /metrics (default: none; "
        "prefer MODELTEL_COLLECTOR_AUTH_TOKEN, which other users cannot read in the process list)",
    )
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate: serve OTLP and --listen over TLS, with --tls-key (default: none)",
    )
    p.add_argument("--tls-key", metavar="FILE", help="PEM private key for --tls-cert (default: none)")
    p.add_argument(
        "--ready-file", metavar="PATH", help="write the bound ports as JSON here once listening (default: none)"
    )
    p.add_argument("--version", action="version", version=f"modeltel collector {_version()}")
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modeltel")
    except PackageNotFoundError:
        return "unknown"


def config_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> Config:
    """The collector's settings: the flags given (``args``) over the environment over ``--config``."""
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "ready_file")}
    return load(args.config, env, overrides=overrides)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (like MALLOC_ARENA_MAX=2) before any receiver thread starts.

    glibc gives each thread that allocates concurrently its own arena (up to 8 per core) and rarely returns
    their free space: with dozens of connection threads decoding multi-MiB requests, RSS grew to several
    times the bytes actually held. Two arenas cost no measurable throughput here (the GIL serialises
    most allocation anyway). A no-op where glibc's ``mallopt`` is not available.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas)


_M_ARENA_MAX = -8  # from glibc's malloc.h


def main(argv: list[str] | None = None) -> int:
    """Receive OTLP from apps; serve /metrics for Prometheus, /healthz and a trace API."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    limit_malloc_arenas()
    try:
        cfg = config_from(args)
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
