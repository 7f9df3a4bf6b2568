"""Ray Serve: each handle or HTTP request a replica runs as a prediction (a streamed one as a generation),
``@serve.batch`` batches as a ``batch`` stage.

Where (Ray Serve's own seams, not the user's class, which Ray pickles into replica processes):

* Replica side: ``UserCallableWrapper.call_user_method`` (the one path through which a replica runs a
  deployment's ``__call__`` or any other method for a unary handle or gRPC request). Its coroutine is
  wrapped *before* Ray's ``_run_user_code`` decorator, so the wrapper runs on the user-code event loop
  with the user method inside it: a prediction root (unless one is active) named by the deployment,
  with the ``inference`` stage (``modeltel.framework.stage`` = the method called).
* ``@serve.batch``: ``_BatchQueue._process_batch_inner`` (``_process_batch`` on older Ray) runs the
  user's batch function once for a batch of requests; it is the custom stage ``batch`` (in a trace of its
  own: one span cannot belong to the several requests' traces) and records the batch size.
* Trace context: the calling side's W3C context (``traceparent``/``tracestate``) is injected into the
  request's ``RequestMetadata`` (``modeltel_trace_context``, pickled with it to the replica) when a
  ``DeploymentHandle`` builds it, and extracted in the replica around the prediction. Ray's own
  ``tracing_context`` field is left alone (Ray overwrites it unless Ray's tracing is configured).

Streaming calls (``handle.options(stream=True)`` on a generator or async generator method) go through
the replica's ``call_user_generator``, the async generator whose items the replica sends back one by
one. Each such call is a generation (``docs/generative-serving.md``, through the one stream wrapper,
:meth:`modeltel.Generation.stream`): each item counts as a token, the first one is time to first token
(as the item leaves the user's generator for the caller, on the replica), the inference stage spans the
stream inside it, in the caller's trace context; a caller that stops early or cancels (Ray closes the
stream) makes it ``cancelled``. Serve's local testing mode runs streams through another path
(``_call_user_generator`` with a queue), not wrapped.

HTTP requests (from Serve's proxy, or direct ingress) reach the user's code through the replica's
``_call_http_entrypoint``, wrapped (re-decorated like ``call_user_method``) for a deployment that is not an
ASGI app (a plain ``__call__(request)``): a prediction with the inference stage, in the trace context of
the request's ``traceparent`` header, its status the response's; its ASGI ``send`` is watched as the
FastAPI middleware watches it (:func:`.http_stream.run_observed`), so a streamed body
(``StreamingResponse``) is a generation. A ``@serve.ingress`` FastAPI app passes through: the FastAPI
instrumentor counts it in the replica (its middleware, a streamed body as a generation), once.
The replica process must itself be instrumented (``opentelemetry-instrument`` passes its environment
to Ray's workers through the raylet; otherwise instrument in the deployment's ``__init__``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Collection
from contextlib import ExitStack
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import modeltel
from modeltel import taxonomy as tx

from .base import Make, ModeltelInstrumentor, Patches, Scope, stage_attributes, wrap
from .http_server import Requests
from .http_stream import run_observed

_log = logging.getLogger(__name__)
CARRIER_ATTR = "modeltel_trace_context"
_propagator = TraceContextTextMapPropagator()
_attributes: dict[str, dict[str, Any]] = {}
_REQUEST_KEY = ("rayserve", "request")
# The deployment whose request is running in this context. Ray starts a @serve.batch loop from the first
# request's context, so the loop still knows its deployment where Serve sets no replica context (local
# testing mode).
_deployment: contextvars.ContextVar[str | None] = contextvars.ContextVar("modeltel_ray_deployment", default=None)


def _method_attributes(method: str) -> dict[str, Any]:
    attrs = _attributes.get(method)
    if attrs is None:
        attrs = _attributes[method] = stage_attributes("rayserve", method)
    return attrs


def _deployment_of(wrapper: Any) -> str | None:
    name = getattr(getattr(wrapper, "_deployment_id", None), "name", None)
    return name if isinstance(name, str) else None


def _replica_deployment(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    """The replica's deployment, else that of the request that started this batch loop."""
    try:
        from ray.serve import context

        ctx = context._get_internal_replica_context()
        name = getattr(ctx, "deployment", None) if ctx is not None else None
    except Exception:
        name = None
    return (name if isinstance(name, str) else _deployment.get()), None


class _InDeployment:
    """Sets :data:`_deployment` for one request."""

    __slots__ = ("_name", "_token")

    def __init__(self, name: str) -> None:
        self._name = name

    def __enter__(self) -> None:
        self._token = _deployment.set(self._name)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:  # noqa: SIM105
            _deployment.reset(self._token)
        except ValueError:  # exited in another context
            pass


class _Attached:
    """The caller's trace context, extracted from the request's carrier, attached for the request."""

    __slots__ = ("_carrier", "_token")

    def __init__(self, carrier: Any) -> None:
        self._carrier = carrier

    def __enter__(self) -> None:
        self._token = otel_context.attach(_propagator.extract(carrier=self._carrier))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:  # noqa: SIM105
            otel_context.detach(self._token)
        except Exception:
            pass


def _batch_of(args: tuple, kwargs: dict) -> int | None:
    batch = args[2] if len(args) > 2 else kwargs.get("batch")
    try:
        return len(batch)
    except TypeError:
        return None


def _fresh_context() -> contextvars.Context:
    """A copy of the current context without an OpenTelemetry span or modeltel frame in it.

    Ray's batch loop task is created inside the first request that reaches a ``@serve.batch`` method
    and keeps that request's context for its lifetime; every batch would be a child of that request.
    """
    ctx = contextvars.copy_context()

    def clear() -> None:
        otel_context.attach(otel_context.Context())
        modeltel.detach_from_prediction()

    ctx.run(clear)
    return ctx


def _own_trace(make: Make) -> Make:
    """Run the wrapped coroutine function (a batch) as a task in a fresh context: a trace of its own."""

    def outer(func: Any, owner: Any) -> Any:
        inner = make(func, owner)

        @functools.wraps(func)
        async def run_detached(*args: Any, **kwargs: Any) -> Any:
            return await _fresh_context().run(asyncio.ensure_future, inner(*args, **kwargs))

        return run_detached

    return outer


def _inject_into(metadata: Any) -> None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    if carrier:
        try:  # noqa: SIM105
            setattr(metadata, CARRIER_ATTR, carrier)
        except Exception:  # a metadata type without a __dict__: no propagation
            pass


class RayServeInstrumentor(ModeltelInstrumentor):
    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("rayserve")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        try:
            from ray.serve import batching, handle
            from ray.serve._private.replica import UserCallableWrapper
        except ImportError as missing:  # ray without its [serve] extra: the dependency check cannot tell
            _log.debug("modeltel: Ray Serve not importable (%s); not instrumenting it", missing)
            return

        # Replica: handle calls, and HTTP requests to a deployment that is not an ASGI app.
        _on_user_loop(patches, UserCallableWrapper, "call_user_method", lambda raw: wrap(raw, self._request_scope))
        if "_call_http_entrypoint" in UserCallableWrapper.__dict__:
            _on_user_loop(patches, UserCallableWrapper, "_call_http_entrypoint", self._http_call)
        # Streaming calls: the async generator the replica iterates, as a generation.
        patches.wrap(UserCallableWrapper, "call_user_generator", self._generator_call)

        # @serve.batch: one "batch" stage per batch the queue runs.
        batch = self.framework_stage(
            "rayserve", "serve.batch", "batch", model_of=_replica_deployment, batch_of=_batch_of
        )
        for name in ("_process_batch_inner", "_process_batch"):
            if patches.wrap(batching._BatchQueue, name, _own_trace(batch)):
                break

        # Caller: carry the W3C context in the request metadata.
        base = handle._DeploymentHandleBase
        original = base.__dict__["_init_router_and_get_metadata"]

        def _init_router_and_get_metadata(self: Any) -> Any:
            router, metadata = original(self)
            _inject_into(metadata)
            return router, metadata

        _init_router_and_get_metadata.__wrapped__ = original  # type: ignore[attr-defined]
        patches.replace(base, "_init_router_and_get_metadata", _init_router_and_get_metadata)

    def _request_scope(self, args: tuple, kwargs: dict) -> Scope | None:
        """``call_user_method(self, request_metadata, ...)``: the caller's context, the prediction (unless
        one is active) and the inference stage, named by the deployment."""
        request = _request_of(args, kwargs)
        if request is None:
            return None
        meta, name, attributes = request
        t = self.telemetry()
        managers = _carried(getattr(meta, CARRIER_ATTR, None), name)
        if not modeltel.in_prediction():
            managers += (t.prediction(name, attributes=attributes),)
        managers += (t.stage(tx.STAGE_INFERENCE, model_name=name, attributes=attributes),)
        return Scope(_REQUEST_KEY, managers)

    def _generator_call(self, func: Any, owner: Any) -> Any:
        """``call_user_generator(self, request_metadata, ...)``, the async generator whose items the replica
        sends back one by one, as a generation (each item a token, the first one time to first token) with
        the inference stage inside it, in the caller's trace context. A consumer that stops early (the
        caller cancelled or went away: Ray closes this generator) makes it ``cancelled``."""
        telemetry = self.telemetry

        async def call_user_generator(*args: Any, **kwargs: Any) -> Any:
            items = func(*args, **kwargs)
            request = _request_of(args, kwargs)
            if request is not None:
                meta, name, attributes = request
                t = telemetry()
                stage = t.stage(tx.STAGE_INFERENCE, model_name=name, attributes=attributes)
                items = t.generation(name, attributes=attributes).stream(stage.stream_async(items))
                carried = Scope(_REQUEST_KEY, _carried(getattr(meta, CARRIER_ATTR, None), name))
                items = carried.stream_async(items)  # the generation opens in the caller's context
            try:
                async for item in items:
                    yield item
            finally:
                await items.aclose()

        return functools.wraps(func)(call_user_generator)

    def _http_call(self, raw: Any) -> Any:
        """``_call_http_entrypoint(self, user_method_info, scope, receive, send)``, an HTTP request to a
        deployment's method (its ``send`` carries the response's ASGI messages), as one prediction named by
        the deployment (:func:`.http_stream.run_observed`: an error at status ``>= 400`` or an exception, a
        generation when the body streams), with the inference stage inside it, in the trace context of the
        request's ``traceparent`` header. An ASGI app (``@serve.ingress``) passes through: the FastAPI
        instrumentor counts its requests inside it."""
        telemetry = self.telemetry

        @functools.wraps(raw)
        async def _call_http_entrypoint(wrapper: Any, info: Any, scope: dict, receive: Any, send: Any) -> Any:
            if getattr(info, "is_asgi_app", True) or modeltel.in_prediction():
                return await raw(wrapper, info, scope, receive, send)
            name = _deployment_of(wrapper)
            attributes = _method_attributes(getattr(info, "name", "__call__"))
            t = telemetry()
            outer: list[trace.Span] = []  # the prediction's span, to relabel when a generation took it over

            async def app(scope: dict, receive: Any, send: Any) -> Any:
                outer.append(trace.get_current_span())
                with t.stage(tx.STAGE_INFERENCE, model_name=name, attributes=attributes):
                    return await raw(wrapper, info, scope, receive, send)

            with ExitStack() as carried:
                for manager in _carried(_header_carrier(scope), name):
                    carried.enter_context(manager)
                return await run_observed(
                    app,
                    (scope, receive, send),
                    t.prediction(name, attributes=attributes),
                    telemetry,
                    taken_over=lambda p: Requests.taken_over(p, outer[0] if outer else None),
                )

        return _call_http_entrypoint


def _header_carrier(scope: dict) -> dict[str, str]:
    """The W3C trace context headers of an ASGI scope."""
    carrier = {}
    for key, value in scope.get("headers") or ():
        if key in (b"traceparent", b"tracestate"):  # ASGI header names are lower-case
            carrier[key.decode("latin-1")] = value.decode("latin-1")
    return carrier


def _on_user_loop(patches: Patches, cls: type, name: str, make: Any) -> None:
    """Replace ``cls.name``, a coroutine method Ray decorates with its ``_run_user_code`` (which runs it on
    the user-code event loop), with ``make(raw coroutine)`` decorated again: the wrapper runs on that loop,
    with the user's code inside it."""
    decorated = cls.__dict__[name]
    raw = getattr(decorated, "__wrapped__", None)
    run_user_code = cls.__dict__.get("_run_user_code")
    decorator_found = raw is not None and callable(run_user_code)  # else the method is the coroutine function
    patches.replace(cls, name, run_user_code(make(raw)) if decorator_found else make(decorated))


def _request_of(args: tuple, kwargs: dict) -> tuple[Any, str | None, dict[str, Any]] | None:
    """(request metadata, deployment name, span attributes of the method called) of a replica call
    ``(self, request_metadata, ...)``, or None when it is not one."""
    if len(args) < 2 and "request_metadata" not in kwargs:
        return None
    meta = args[1] if len(args) > 1 else kwargs["request_metadata"]
    method = getattr(meta, "call_method", "__call__") or "__call__"
    return meta, _deployment_of(args[0]), _method_attributes(method)


def _carried(carrier: dict[str, str] | None, name: str | None) -> tuple[Any, ...]:
    """The caller's trace context from the request's carrier, and the deployment, for one request."""
    managers: tuple[Any, ...] = (_Attached(carrier),) if carrier else ()
    return (*managers, _InDeployment(name)) if name is not None else managers
