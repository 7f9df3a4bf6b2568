"""Flask: the contrib server span, plus a modeltel prediction per model request under it.

``instrument()`` turns on ``opentelemetry-instrumentation-flask`` (keyword arguments such as
``tracer_provider`` go to it, and modeltel records with the same providers) unless it is on already,
and wraps ``Flask.full_dispatch_request`` (and overrides) so each model request is a prediction whose
status is the response's. ``instrument_app(app)`` does the same for one app, as contrib's
``FlaskInstrumentor.instrument_app`` does.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Collection
from typing import Any

from .base import ModeltelInstrumentor, Patches, patch_hierarchy, telemetry_source
from .http_server import Requests, contrib_kwargs, status_ok

_APP_ATTR = "_modeltel_requests"  # the Requests of an app instrumented with instrument_app()


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


class ModeltelFlaskInstrumentor(ModeltelInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return ("flask >= 2.2, < 4", "opentelemetry-instrumentation-flask >= 0.45b0")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from flask.app import Flask  # the class itself: the contrib replaces ``flask.Flask`` with a subclass
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        contrib = FlaskInstrumentor()
        if not contrib.is_instrumented_by_opentelemetry:
            contrib.instrument(**contrib_kwargs(kwargs))
            patches.defer(contrib.uninstrument)
        requests = Requests(kwargs, self.telemetry)
        patches.defer(lambda: setattr(requests, "on", False))
        patch_hierarchy(patches, Flask, {"full_dispatch_request": _dispatch_wrapper(requests)})

    @staticmethod
    def instrument_app(app: Any, **kwargs: Any) -> None:
        """Instrument one app: the contrib's server span (``tracer_provider``, ``meter_provider`` and its
        other options) and modeltel's predictions, recorded with the same providers."""
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        if getattr(app, _APP_ATTR, None) is not None:
            return
        requests = Requests(kwargs, telemetry_source(kwargs))
        dispatch = _dispatch_wrapper(requests)(type(app).full_dispatch_request, None)
        app.full_dispatch_request = types.MethodType(dispatch, app)
        setattr(app, _APP_ATTR, requests)
        FlaskInstrumentor.instrument_app(app, **contrib_kwargs(kwargs))

    @staticmethod
    def uninstrument_app(app: Any) -> None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        requests = getattr(app, _APP_ATTR, None)
        if requests is None:
            return
        FlaskInstrumentor.uninstrument_app(app)
        requests.on = False
        del app.full_dispatch_request  # the class's again
        delattr(app, _APP_ATTR)
