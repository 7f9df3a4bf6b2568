"""The ``modeltel`` command: ``run`` (zero-code start-up), ``demo``, ``alerts`` and ``slo`` (ops tooling),
and commands that other packages
register under the ``modeltel.commands`` entry point group (the collector registers ``collector``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import PROTOCOLS

# flag: (variable it sets, metavar, choices, what the variable defaults to when unset)
_RUN_ENV: dict[str, tuple[str, str, tuple[str, ...] | None, str]] = {
    "--model-name": ("MODELTEL_MODEL_NAME", "NAME", None, "unknown"),
    "--model-version": ("MODELTEL_MODEL_VERSION", "VERSION", None, "unknown"),
    "--service-name": ("OTEL_SERVICE_NAME", "NAME", None, "the model name, else modeltel-app"),
    "--endpoint": ("OTEL_EXPORTER_OTLP_ENDPOINT", "URL", None, "http://localhost:4318"),
    "--protocol": ("OTEL_EXPORTER_OTLP_PROTOCOL", "PROTOCOL", PROTOCOLS, "http/protobuf"),
}


def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="modeltel.commands")}


def _summary(plugin: Any) -> str:
    """The first line of a plugin command's docstring, for ``modeltel --help``."""
    try:
        doc = plugin.load().__doc__ or ""
    except Exception as exc:  # a broken plugin must not break --help
        return f"(unavailable: {type(exc).__name__}: {exc})"
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else f"see `modeltel {plugin.name} --help`"


def _run(args: argparse.Namespace) -> int:
    """Start ``args.command`` with modeltel's distro, configurator and every installed instrumentor.

    This is ``opentelemetry-instrument`` with modeltel selected, so both front doors behave the same.
    """
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("modeltel run: give the command to run, e.g. `modeltel run -- uvicorn app:app`", file=sys.stderr)
        return 2
    path = shutil.which(command[0])
    if path is None:
        print(f"modeltel run: command not found: {command[0]}", file=sys.stderr)
        return 127
    foreign = _foreign_python(path)
    if foreign is not None:
        print(
            f"modeltel run: {foreign} is another environment's Python, without modeltel; running the command"
            " uninstrumented (activate modeltel's environment, or pip install modeltel into that one)",
            file=sys.stderr,
        )
        os.execv(path, command)
    os.environ["OTEL_PYTHON_DISTRO"] = "modeltel"
    os.environ["OTEL_PYTHON_CONFIGURATOR"] = "modeltel"
    for flag, (var, *_) in _RUN_ENV.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value:
            os.environ[var] = value
    from opentelemetry.instrumentation.auto_instrumentation import run

    sys.argv = ["opentelemetry-instrument", *command]
    run()  # execs the command; returns only if exec fails, which raises
    return 0


def _foreign_python(path: str) -> str | None:
    """The Python that would run ``path`` (an interpreter, or a script's ``#!`` line) when it belongs to
    another environment that cannot import modeltel: there the start-up hook would fail with Python's bare
    "Error in sitecustomize". None when it is this environment's Python, or another that has modeltel."""
    interpreter = path if re.fullmatch(r"python[\d.]*", Path(path).name) else _shebang_python(path)
    if interpreter is None or Path(interpreter).parent == Path(sys.executable).parent:
        return None
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = [interpreter, "-c", "import modeltel, opentelemetry.instrumentation.auto_instrumentation"]
    ok = subprocess.run(probe, env=env, capture_output=True, timeout=60).returncode == 0
    return None if ok else interpreter


def _shebang_python(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    if len(words) > 1 and Path(words[0]).name == "env":  # #!/usr/bin/env python3
        words = [shutil.which(words[1]) or words[1]]
    return words[0] if words and "python" in Path(words[0]).name else None


def _demo(args: argparse.Namespace) -> int:
    if args.generative:
        from .demo_generative import run_generative_demo

        return run_generative_demo(duration=args.duration, concurrency=min(args.concurrency, 4))
    from .demo import run_demo

    return run_demo(duration=args.duration, concurrency=args.concurrency, keep=args.keep)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plugins = _plugins()
    if argv and argv[0] in plugins and argv[0] not in ("run", "demo"):
        return int(plugins[argv[0]].load()(argv[1:]) or 0)
    args = build_parser(plugins).parse_args(argv)
    return int(args.func(args) or 0)


def build_parser(plugins: dict[str, Any]) -> argparse.ArgumentParser:
    """``modeltel``'s parser: ``run``, ``demo``, and one entry per plugin command (which parses its own)."""
    parser = argparse.ArgumentParser(prog="modeltel", description="OpenTelemetry for ML model serving")
    parser.add_argument("--version", action="version", version=f"modeltel {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)

    run = sub.add_parser(
        "run",
        help="run a command with modeltel auto-instrumentation (e.g. modeltel run -- uvicorn app:app)",
        description="Run a command with modeltel's distro, configurator and every installed instrumentor, "
        "configured by environment variables (OTEL_*, MODELTEL_*); the flags below set the common ones.",
    )
    for flag, (var, metavar, choices, default) in _RUN_ENV.items():
        shown = None if choices else metavar  # argparse then lists the choices
        run.add_argument(flag, metavar=shown, choices=choices, help=f"sets {var} (default: {default})")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    run.set_defaults(func=_run)

    demo = sub.add_parser(
        "demo",
        help="serve an instrumented model under load and report from its telemetry",
        description="Start a modeltel collector and the example iris server under `modeltel run`, drive it "
        "with clients, and print per-stage latency, throughput, errors and the slowest trace.",
    )
    demo.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    demo.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    demo.add_argument(
        "--keep", action="store_true", help="leave the collector running afterwards, Ctrl-C stops it (default: off)"
    )
    demo.add_argument(
        "--generative",
        action="store_true",
        help="the OpenAI-compatible tiny LM streaming under load, a decode slowdown, the TPOT alert arriving "
        "(needs the transformers extra, Prometheus and Alertmanager; default: off, the iris demo)",
    )
    demo.set_defaults(func=_demo)

    from .ops import add_ops_commands

    add_ops_commands(sub)

    for name in sorted(plugins):
        if name not in ("run", "demo"):
            sub.add_parser(name, help=_summary(plugins[name]), add_help=False)
    return parser


if __name__ == "__main__":
    sys.exit(main())
