"""One rule for the system programs the integration tests run for real (Debian packages, ``make system``).

Under ``CI=true`` a missing program fails the test: CI installs them, so a missing one is a broken CI image, and a
skip there would pass a run that proved nothing. Elsewhere the test skips and its reason says how to install it.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["require_alert_stack", "require_binary"]


def require_binary(name: str, *others: str, package: str) -> str:
    """The path of ``name`` (or of the first of ``others`` found); fails under CI=true, else skips, when none is."""
    path = next((p for p in map(shutil.which, (name, *others)) if p), None)
    if path is not None:
        return path
    message = f"{name} is not installed: sudo apt-get install {package} (or make system)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def require_alert_stack() -> None:
    """Prometheus and Alertmanager, which ``modeltel.cli.alertstack.AlertStack`` starts."""
    require_binary("prometheus", package="prometheus")
    require_binary("prometheus-alertmanager", package="prometheus-alertmanager")
