"""The analytics' ``modeltel.commands`` entry points: a clear one-line error without the analytics extra.

The commands themselves live in ``analytics_cli``, which imports numpy; this module imports nothing heavy,
so ``modeltel detect`` on an install without ``modeltel[analytics]`` says what to install instead of
printing an ImportError traceback.
"""

from __future__ import annotations

import importlib
import sys


def _run(command: str, argv: list[str] | None) -> int:
    for module in ("numpy", "scipy", "yaml"):
        try:
            importlib.import_module(module)
        except ImportError:
            print(f"modeltel {command}: needs {module} (pip install 'modeltel[analytics]')", file=sys.stderr)
            return 2
    from modeltel_collector import analytics_cli

    return getattr(analytics_cli, command)(argv)


def detect(argv: list[str] | None = None) -> int:
    """Backtest the degradation detectors on a prediction log: every detection, with the row that raised it."""
    return _run("detect", argv)


def health(argv: list[str] | None = None) -> int:
    """Each model's health: healthy or degraded, the worst severity, and every check's details."""
    return _run("health", argv)


def baseline(argv: list[str] | None = None) -> int:
    """Capture or check baseline-metrics.json: what normal looks like for each model version."""
    return _run("baseline", argv)


def evidence(argv: list[str] | None = None) -> int:
    """Build the monitoring spec's evidence package from the running system and check its quality gates."""
    return _run("evidence", argv)
