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


# Instrumentors modeltel drives itself from its own settings rather than letting every installed one start:
# opentelemetry-instrumentation-system-metrics registers one that would ignore MODELTEL_HOST_METRICS and
# read every socket on the machine (psutil.net_connections) at each collection.
_MANAGED_INSTRUMENTORS = frozenset({"system_metrics"})


class ModeltelDistro(BaseDistro):
    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "modeltel")

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        if entry_point.name in _MANAGED_INSTRUMENTORS:
            _log.debug("modeltel: %s is configured by modeltel.meters, not auto-loaded", entry_point.name)
            return
        super().load_instrumentor(entry_point, **kwargs)


class ModeltelConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        from .pipeline import init

        try:
            init()
        except Exception:  # the application must start even if monitoring cannot
            _log.exception("modeltel: set-up failed; the application runs without modeltel telemetry")
