"""FastAPI / Starlette: the contrib server span, plus a modeltel prediction per model request under it.

``instrument()`` turns on ``opentelemetry-instrumentation-fastapi`` (keyword arguments such as
``tracer_provider`` go to it, and modeltel records with the same providers) unless it is on already,
and wraps ``build_middleware_stack`` of Starlette and FastAPI (and subclasses) so every app gets
modeltel's ASGI middleware just inside the server span. ``instrument_app(app)`` does the same for one
app, as contrib's ``FastAPIInstrumentor.instrument_app`` does.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Collection
from typing import Any

from .base import ModeltelInstrumentor, Patches, patch_hierarchy, telemetry_source
from .http_server import Requests, contrib_kwargs, status_ok

_APP_ATTR = "_modeltel_requests"  # the Requests of an app instrumented with instrument_app()


class ModeltelASGIMiddleware:
    """A prediction frame around each model request; passes everything through when turned off."""

    def __init__(self, app: Any, requests: Requests) -> None:
        self.app = app
        self._requests = requests

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._requests.is_prediction(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        with self._requests.prediction() as prediction:
            try:
                await self.app(scope, receive, send_status)
            finally:
                prediction.set_outcome(status_ok(status[0] if status else None))


def _build_wrapper(requests: Requests) -> Any:
    """A ``make`` for ``build_middleware_stack``: modeltel's middleware inside Starlette's error handler (so
    it sees handled statuses), which the contrib's server-span middleware ends up wrapping."""
    from starlette.middleware.errors import ServerErrorMiddleware

    def make(func: Any, owner: Any) -> Any:
        def build_middleware_stack(self: Any) -> Any:
            stack = func(self)
            if isinstance(stack, ServerErrorMiddleware) and not isinstance(stack.app, ModeltelASGIMiddleware):
                stack.app = ModeltelASGIMiddleware(stack.app, requests)
                return stack
            return ModeltelASGIMiddleware(stack, requests)

        return functools.wraps(func)(build_middleware_stack)

    return make


class ModeltelFastAPIInstrumentor(ModeltelInstrumentor):
    _owns_contrib = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("fastapi >= 0.100, < 1", "opentelemetry-instrumentation-fastapi >= 0.45b0")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from starlette.applications import Starlette

        contrib = FastAPIInstrumentor()
        if not contrib.is_instrumented_by_opentelemetry:
            contrib.instrument(**contrib_kwargs(kwargs))
            patches.defer(contrib.uninstrument)
        requests = Requests(kwargs, self.telemetry)
        patches.defer(lambda: setattr(requests, "on", False))
        patch_hierarchy(patches, Starlette, {"build_middleware_stack": _build_wrapper(requests)})

    @staticmethod
    def instrument_app(app: Any, **kwargs: Any) -> None:
        """Instrument one app: the contrib's server span (``tracer_provider``, ``meter_provider`` and its
        other options) and modeltel's predictions, recorded with the same providers."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        if getattr(app, _APP_ATTR, None) is not None:
            return
        requests = Requests(kwargs, telemetry_source(kwargs))
        build = _build_wrapper(requests)(type(app).build_middleware_stack, None)
        app.build_middleware_stack = types.MethodType(build, app)  # before the contrib's, which wraps it
        setattr(app, _APP_ATTR, requests)
        FastAPIInstrumentor.instrument_app(app, **contrib_kwargs(kwargs))
        app.middleware_stack = None  # built again, with both, on the next request

    @staticmethod
    def uninstrument_app(app: Any) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        requests = getattr(app, _APP_ATTR, None)
        if requests is None:
            return
        FastAPIInstrumentor.uninstrument_app(app)
        requests.on = False
        del app.build_middleware_stack  # the class's again
        delattr(app, _APP_ATTR)
        app.middleware_stack = None
