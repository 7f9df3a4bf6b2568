"""Flask: the contrib server span, plus a modeltel prediction per model request under it.

``instrument()`` turns on ``opentelemetry-instrumentation-flask`` (keyword arguments such as
``tracer_provider`` go to it) unless it is on already, and wraps ``Flask.full_dispatch_request`` (and
overrides) so each model request is a prediction whose status is the response's.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import modeltel

from ._common import Patches, patch_hierarchy
from ._http import RequestFilter, status_ok

_state: dict[str, Any] = {"filter": RequestFilter()}


def _wrap_dispatch(func: Any, owner: Any) -> Any:
    from flask import request

    @functools.wraps(func)
    def full_dispatch_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not _state["filter"](request.method, request.path):
            return func(self, *args, **kwargs)
        with modeltel.prediction(own_span=False) as prediction:
            response = None
            try:
                response = func(self, *args, **kwargs)
                return response
            finally:
                prediction.set_outcome(status_ok(getattr(response, "status_code", None)))

    return full_dispatch_request


class ModeltelFlaskInstrumentor(BaseInstrumentor):
    _patches: Patches | None = None
    _owns_contrib = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("flask >= 2.2, < 4", "opentelemetry-instrumentation-flask >= 0.45b0")

    def _instrument(self, **kwargs: Any) -> None:
        from flask.app import Flask  # the class itself: the contrib replaces ``flask.Flask`` with a subclass
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        contrib = FlaskInstrumentor()
        if not contrib.is_instrumented_by_opentelemetry:
            contrib.instrument(**{k: v for k, v in kwargs.items() if k not in ("prediction_methods", "excluded_paths")})
            self._owns_contrib = True
        _state["filter"] = RequestFilter(kwargs.get("prediction_methods"), kwargs.get("excluded_paths"))
        self._patches = Patches()
        patch_hierarchy(self._patches, Flask, {"full_dispatch_request": _wrap_dispatch})

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._patches is not None:
            self._patches.restore()
            self._patches = None
        if self._owns_contrib:
            from opentelemetry.instrumentation.flask import FlaskInstrumentor

            FlaskInstrumentor().uninstrument()
            self._owns_contrib = False
