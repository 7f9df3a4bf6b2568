"""FastAPI / Starlette: the contrib server span, plus a modeltel prediction per model request under it.

``instrument()`` turns on ``opentelemetry-instrumentation-fastapi`` (keyword arguments such as
``tracer_provider`` go to it, and modeltel records with the same providers) unless it is on already,
and wraps ``build_middleware_stack`` of Starlette and FastAPI (and subclasses) so every app gets
modeltel's ASGI middleware just inside the server span. ``instrument_app(app)`` does the same for one
app, as contrib's ``FastAPIInstrumentor.instrument_app`` does. A model request whose response body streams
(``StreamingResponse``, server-sent events) is a generation, from its first body chunk to its last
(:mod:`.http_stream`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

from .http_server import HttpServerInstrumentor, Requests
from .http_stream import run_observed


class ModeltelASGIMiddleware:
    """A prediction frame around each model request, a generation when its body streams
    (:mod:`.http_stream`); passes everything through when turned off."""

    def __init__(self, app: Any, requests: Requests) -> None:
        self.app = app
        self._requests = requests

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._requests.is_prediction(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        await run_observed(
            self.app,
            (scope, receive, send),
            self._requests.prediction(),
            self._requests.telemetry,
            taken_over=self._requests.taken_over,
        )


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


class ModeltelFastAPIInstrumentor(HttpServerInstrumentor):
    app_method = "build_middleware_stack"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("fastapi")

    @staticmethod
    def _contrib() -> Any:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        return FastAPIInstrumentor

    @staticmethod
    def _app_class() -> type:
        from starlette.applications import Starlette

        return Starlette

    _wrapper = staticmethod(_build_wrapper)

    @staticmethod
    def _rebuild(app: Any) -> None:
        app.middleware_stack = None  # Starlette builds it again, from build_middleware_stack, on the next request
