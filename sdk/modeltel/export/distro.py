"""Entry points that ``opentelemetry-instrument`` loads: our distro and our configurator.

``opentelemetry-instrument`` configures the distro first, then one configurator, then every
instrumentor. The distro makes sure that configurator is modeltel's even when another one (such as
opentelemetry-distro's) is installed too; the configurator builds the pipeline from the environment.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
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
        """Instrument what ``entry_point`` names, silently when all is well.

        Two changes to the stock loader: an instrumentor that is already on (the contrib FastAPI one that
        ``modeltel_fastapi`` turned on) is left alone instead of warning "already instrumented", and a
        modeltel instrumentor whose framework is installed but whose other requirements are not says so in
        one line, with the ``pip install`` that fixes it, instead of being skipped without a word.
        """
        if entry_point.name in _MANAGED_INSTRUMENTORS:
            _log.debug("modeltel: %s is configured by modeltel.meters, not auto-loaded", entry_point.name)
            return
        instrumentor = entry_point.load()()
        if instrumentor.is_instrumented_by_opentelemetry:
            return
        if entry_point.value.startswith("modeltel.") and not requirements_met(entry_point.name, instrumentor):
            return
        instrumentor.instrument(**kwargs)


def requirements_met(name: str, instrumentor: Any) -> bool:
    """Whether a modeltel instrumentor can run; if its framework (the first requirement) is installed but
    something else is missing or out of range, log one line that says what to install."""
    requirements = tuple(instrumentor.instrumentation_dependencies())
    if not requirements:  # modeltel run from a source tree: no installed metadata to check against
        return True
    framework, *others = requirements
    conflict = get_dependency_conflicts([framework])
    if conflict is not None:
        if conflict.found:  # installed, at a version we do not support
            _log.warning(
                "modeltel: %s is not monitored: %s is installed, %s needs %s",
                name,
                conflict.found,
                name,
                conflict.required,
            )
        return False
    conflict = get_dependency_conflicts(others)
    if conflict is None:
        return True
    extra = name.removeprefix("modeltel_")
    _log.warning(
        "modeltel: %s is installed but %s is not, so it is not monitored; fix: pip install 'modeltel[%s]'",
        framework.split()[0],
        conflict.required,
        extra,
    )
    return False


class ModeltelConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        from .pipeline import init

        try:
            init()
        except Exception:  # the application must start even if monitoring cannot
            _log.exception("modeltel: set-up failed; the application runs without modeltel telemetry")
