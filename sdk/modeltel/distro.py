"""Entry points that ``opentelemetry-instrument`` loads: our distro and our configurator.

``opentelemetry-instrument`` configures the distro first, then one configurator, then every
instrumentor. The distro makes sure that configurator is modeltel's even when another one (such as
opentelemetry-distro's) is installed too; the configurator builds the pipeline from the environment.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _BaseConfigurator

_log = logging.getLogger("modeltel")


class ModeltelDistro(BaseDistro):
    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "modeltel")


class ModeltelConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        from .pipeline import init

        try:
            init()
        except Exception:  # the application must start even if monitoring cannot
            _log.exception("modeltel: set-up failed; the application runs without modeltel telemetry")
