"""Flask: the contrib server span, plus a modeltel prediction per model request under it.

``instrument()`` turns on ``opentelemetry-instrumentation-flask`` (keyword arguments such as
``tracer_provider`` go to it, and modeltel records with the same providers) unless it is on already,
and wraps ``Flask.full_dispatch_request`` (and overrides) so each model request is a prediction whose
status is the response's. ``instrument_app(app)`` does the same for one app, as contrib's
``FlaskInstrumentor.instrument_app`` does.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from .http_server import HttpServerInstrumentor, Requests, status_ok


def _dispatch_wrapper(requests: Requests) -> Any:
    """A ``make`` for ``full_dispatch_request``: the prediction, with the response's status as its outcome."""
    from flask import request

    def make(func: Any, owner: Any) -> Any:
        def full_dispatch_request(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not requests.is_prediction(request.method, request.path):
                return func(self, *args, **kwargs)
            with requests.prediction() as prediction:
                response = None
                try:
                    response = func(self, *args, **kwargs)
                    return response
                finally:
                    prediction.set_outcome(status_ok(getattr(response, "status_code", None)))

        return functools.wraps(func)(full_dispatch_request)

    return make


class ModeltelFlaskInstrumentor(HttpServerInstrumentor):
    app_method = "full_dispatch_request"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("flask")

    @staticmethod
    def _contrib() -> Any:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        return FlaskInstrumentor

    @staticmethod
    def _app_class() -> type:
        from flask.app import Flask  # the class itself: the contrib replaces ``flask.Flask`` with a subclass

        return Flask

    _wrapper = staticmethod(_dispatch_wrapper)
