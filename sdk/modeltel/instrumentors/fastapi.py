"""FastAPI / Starlette: the contrib server span, plus a modeltel prediction per model request under it.

``instrument()`` turns on ``opentelemetry-instrumentation-fastapi`` (keyword arguments such as
``tracer_provider`` go to it) unless it is on already, and wraps ``build_middleware_stack`` of Starlette
and FastAPI (and subclasses) so every app gets modeltel's ASGI middleware just inside the server span.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import modeltel

from ._common import Patches, patch_hierarchy
from ._http import RequestFilter, status_ok

_state: dict[str, Any] = {"on": False, "filter": RequestFilter()}


class ModeltelASGIMiddleware:
    """A prediction frame around each model request; passes everything through when modeltel is off."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _state["on"] or not _state["filter"](scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        with modeltel.prediction(own_span=False) as prediction:
            try:
                await self.app(scope, receive, send_status)
            finally:
                prediction.set_outcome(status_ok(status[0] if status else None))


def _wrap_build(func: Any, owner: Any) -> Any:
    import functools

    from starlette.middleware.errors import ServerErrorMiddleware

    @functools.wraps(func)
    def build_middleware_stack(self: Any) -> Any:
        stack = func(self)
        if isinstance(stack, ServerErrorMiddleware) and not isinstance(stack.app, ModeltelASGIMiddleware):
            stack.app = ModeltelASGIMiddleware(stack.app)  # inside the error handler: sees handled statuses
            return stack
        return ModeltelASGIMiddleware(stack)

    return build_middleware_stack


class ModeltelFastAPIInstrumentor(BaseInstrumentor):
    _patches: Patches | None = None
    _owns_contrib = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("fastapi >= 0.100, < 1", "opentelemetry-instrumentation-fastapi >= 0.45b0")

    def _instrument(self, **kwargs: Any) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from starlette.applications import Starlette

        contrib = FastAPIInstrumentor()
        if not contrib.is_instrumented_by_opentelemetry:
            contrib.instrument(**{k: v for k, v in kwargs.items() if k not in ("prediction_methods", "excluded_paths")})
            self._owns_contrib = True
        _state["filter"] = RequestFilter(kwargs.get("prediction_methods"), kwargs.get("excluded_paths"))
        _state["on"] = True
        self._patches = Patches()
        patch_hierarchy(self._patches, Starlette, {"build_middleware_stack": _wrap_build})

    def _uninstrument(self, **kwargs: Any) -> None:
        _state["on"] = False  # apps whose stack was built already keep a pass-through middleware
        if self._patches is not None:
            self._patches.restore()
            self._patches = None
        if self._owns_contrib:
            from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

            FastAPIInstrumentor().uninstrument()
            self._owns_contrib = False
