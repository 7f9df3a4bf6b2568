"""Triton's client: spans and the inference stage around ``tritonclient`` calls, ``async_infer`` completed
from its callback (:mod:`modeltel.instrumentors.triton` says what each call records)."""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import modeltel
from modeltel import taxonomy as tx

from ..base import (
    Make,
    ModeltelInstrumentor,
    Patches,
    Scope,
    active_call,
    patch_hierarchy,
    stage_attributes,
    wrap,
)

TRACER_NAME = "modeltel.triton"
# module -> protocol; each module's InferenceServerClient is patched when the module is imported
_CLIENT_MODULES = {
    "tritonclient.http": "http",
    "tritonclient.http.aio": "http",
    "tritonclient.grpc": "grpc",
    "tritonclient.grpc.aio": "grpc",
}
_STAGE_ATTRIBUTES = stage_attributes("triton", "infer")
_KEY = ("triton", "infer")  # the re-entrancy key of a client call (an override calling super(): one call)
_FINISH_ATTR = "_modeltel_finish"


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    if 0 <= index < len(args):
        return args[index]
    return kwargs.get(name, default)


def _batch_of(inputs: Any) -> int | None:
    try:
        shape = inputs[0].shape()
        return int(shape[0]) if len(shape) else None
    except Exception:
        return None


class _ClientCall:
    """One client inference as a context manager: the ``inference`` stage when none is active, and a CLIENT
    span, current while the call runs (so the request headers carry it). Exited once: later exits do nothing."""

    __slots__ = ("_batch", "_model", "_span", "_stage", "_system", "_t", "_token", "_tracer", "_version")

    def __init__(
        self, t: modeltel.Telemetry, tracer: trace.Tracer, system: str, model: Any, version: Any, batch: int | None
    ) -> None:
        self._t, self._tracer, self._system, self._model, self._batch = t, tracer, system, model, batch
        self._version = version if isinstance(version, str) and version else None
        self._stage: Any = None
        self._span: Any = None
        self._token: Any = None

    def __enter__(self) -> _ClientCall:
        try:
            self._open()
        except Exception as failure:  # a monitoring bug must not reach the caller
            self._t.monitoring_failed(failure)
        return self

    def _open(self) -> None:
        model, version, batch = self._model, self._version, self._batch
        if modeltel.current_stage() is None:
            name = model if isinstance(model, str) else None
            self._stage = self._t.stage(
                tx.STAGE_INFERENCE, model_name=name, model_version=version, attributes=_STAGE_ATTRIBUTES
            )
            stage = self._stage.__enter__()
            if batch is not None:
                stage.set_batch_size(batch)
        attributes: dict[str, Any] = {
            tx.SPAN_ATTR_FRAMEWORK: "triton",
            tx.SPAN_ATTR_FRAMEWORK_STAGE: "infer",
            "rpc.system": "grpc" if self._system == "grpc" else "http",
            tx.ATTR_MODEL_NAME: str(model),
        }
        if version is not None:
            attributes[tx.ATTR_MODEL_VERSION] = version
        if batch is not None:
            attributes[tx.SPAN_ATTR_BATCH_SIZE] = batch
        name = f"triton.infer {model}"
        span = self._span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        if span.get_span_context().is_valid:
            self._token = otel_context.attach(trace.set_span_in_context(span))

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        span, stage, token = self._span, self._stage, self._token
        self._span = self._stage = self._token = None
        if token is not None:
            otel_context.detach(token)
        if span is not None:
            if exc is not None:
                span.record_exception(exc, escaped=True)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
        if stage is not None:
            stage.__exit__(type(exc) if exc is not None else None, exc, None)


def _with_headers(args: tuple, kwargs: dict, index: int) -> tuple[tuple, dict]:
    """``args``/``kwargs`` with the ``headers`` argument replaced by a copy carrying the current trace context."""
    carrier: dict[str, Any] = {}
    propagate.inject(carrier)
    if not carrier:
        return args, kwargs
    if 0 <= index < len(args):
        headers = {**(args[index] or {}), **carrier}
        return (*args[:index], headers, *args[index + 1 :]), kwargs
    return args, {**kwargs, "headers": {**(kwargs.get("headers") or {}), **carrier}}


def _sending_context(func: Callable[..., Any], index: int) -> Callable[..., Any]:
    """``func`` (sync or coroutine function) with the current trace context added to its ``headers``."""
    if inspect.iscoroutinefunction(func):

        async def send_async(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = _with_headers(args, kwargs, index)
            return await func(*args, **kwargs)

        return functools.wraps(func)(send_async)

    def send(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = _with_headers(args, kwargs, index)
        return func(*args, **kwargs)

    return functools.wraps(func)(send)


class _ClientCalls:
    """The ``make`` functions for one instrumentor's client methods (they share its tracer)."""

    def __init__(self, instrumentor: ModeltelInstrumentor) -> None:
        self._instrumentor = instrumentor
        self._cached: tuple[Any, trace.Tracer] | None = None

    def _tracer(self) -> trace.Tracer:
        provider = self._instrumentor.tracer_provider()
        cached = self._cached
        if cached is None or cached[0] is not provider:
            cached = self._cached = (provider, trace.get_tracer(TRACER_NAME, modeltel.__version__, provider))
        return cached[1]

    def _enter(self, system: str, func: Callable[..., Any]) -> Callable[[tuple, dict], Any]:
        """The ``enter`` of a client method: its call's scope, or None inside a call already (pass through)."""
        i_model, i_inputs, i_version = (_index(func, name) for name in ("model_name", "inputs", "model_version"))

        def enter(args: tuple, kwargs: dict) -> Scope | None:
            if active_call() is _KEY:
                return None
            model = _arg(args, kwargs, i_model, "model_name")
            version = _arg(args, kwargs, i_version, "model_version", "")
            batch = _batch_of(_arg(args, kwargs, i_inputs, "inputs"))
            return Scope(
                _KEY, (_ClientCall(self._instrumentor.telemetry(), self._tracer(), system, model, version, batch),)
            )

        return enter

    def infer(self, system: str) -> Make:
        """``infer`` (sync, or a coroutine for the asyncio clients): the call runs inside its scope."""

        def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
            send = _sending_context(func, _index(func, "headers"))
            wrapper = wrap(send, self._enter(system, func))
            wrapper.__wrapped__ = func  # type: ignore[attr-defined]
            return wrapper

        return make

    def async_infer(self, system: str) -> Make:
        """``async_infer``: its scope is entered in a copy of the caller's context and left when the response
        arrives (gRPC: the callback; HTTP: the request's greenlet), so the caller's context never sees it."""

        def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
            enter, i_headers, i_callback = self._enter(system, func), _index(func, "headers"), _index(func, "callback")
            if i_callback >= 0:
                wrapper = _grpc_async(func, enter, i_headers, i_callback)
            else:
                wrapper = _http_async(func, enter, i_headers)
            functools.update_wrapper(wrapper, func)
            return wrapper

        return make


def _index(func: Callable[..., Any], name: str) -> int:
    """The position of parameter ``name`` of ``func`` (``self`` is 0), or -1."""
    names = list(inspect.signature(func).parameters)
    return names.index(name) if name in names else -1


def _grpc_async(func: Callable[..., Any], enter: Any, i_headers: int, i_callback: int) -> Callable[..., Any]:
    """gRPC ``async_infer(..., callback, ...)``: closed when tritonclient calls ``callback(result, error)``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = enter(args, kwargs)
        if scope is None:
            return func(*args, **kwargs)
        finish, args, kwargs = _start(scope, args, kwargs, i_headers)
        callback = _arg(args, kwargs, i_callback, "callback")

        def done(*cb_args: Any, **cb_kwargs: Any) -> Any:
            error = cb_kwargs.get("error", cb_args[1] if len(cb_args) > 1 else None)
            finish(error if isinstance(error, BaseException) else None)
            return callback(*cb_args, **cb_kwargs)

        if 0 <= i_callback < len(args):
            args = (*args[:i_callback], done, *args[i_callback + 1 :])
        else:
            kwargs = {**kwargs, "callback": done}
        try:
            return func(*args, **kwargs)
        except BaseException as exc:
            finish(exc)
            raise

    return wrapper


def _http_async(func: Callable[..., Any], enter: Any, i_headers: int) -> Callable[..., Any]:
    """HTTP ``async_infer``: closed when the request's greenlet finishes (on the gevent hub), or when
    ``get_result()`` returns, whichever comes first."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = enter(args, kwargs)
        if scope is None:
            return func(*args, **kwargs)
        finish, args, kwargs = _start(scope, args, kwargs, i_headers)
        try:
            handle = func(*args, **kwargs)
        except BaseException as exc:
            finish(exc)
            raise
        greenlet = getattr(handle, "_greenlet", None)
        if greenlet is None or not hasattr(greenlet, "rawlink"):
            finish(None)  # unknown handle: time the dispatch only
            return handle

        def done(g: Any) -> None:  # runs on the hub, whether or not get_result() is called
            try:
                exc = g.exception
                finish(exc if exc is not None else _http_error(g.value))
            except Exception:  # must not raise on the hub
                pass

        handle.__dict__[_FINISH_ATTR] = finish  # get_result() closes it first when it is waiting
        greenlet.rawlink(done)
        return handle

    return wrapper


def _start(scope: Scope, args: tuple, kwargs: dict, i_headers: int) -> tuple[Callable[[Any], None], tuple, dict]:
    """Enter ``scope`` in a copy of the caller's context; the call's arguments carrying it, and ``finish(exc)``,
    which exits it there with the call's outcome, the first time only (a greenlet's link and ``get_result()``
    may both report, a gRPC call may fail after scheduling its callback)."""
    ctx = contextvars.copy_context()
    ctx.run(scope.__enter__)
    args, kwargs = ctx.run(_with_headers, args, kwargs, i_headers)
    pending = [scope]  # emptied by the one finish() that exits it (list.pop is atomic: reports may race)

    def finish(exc: BaseException | None) -> None:
        try:
            pending.pop()
        except IndexError:
            return
        ctx.run(scope.__exit__, type(exc) if exc is not None else None, exc, None)

    return finish, args, kwargs


def _get_result_wrapper(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
    """HTTP ``InferAsyncRequest.get_result``: closes the request's span as soon as its result is read.

    (gevent runs the greenlet's links in no set order relative to the waiting ``get``, so the link
    alone may close the span only after ``get_result`` has returned.)
    """

    def get_result(self: Any, *args: Any, **kwargs: Any) -> Any:
        finish = self.__dict__.get(_FINISH_ATTR)
        if finish is None:
            return func(self, *args, **kwargs)
        try:
            result = func(self, *args, **kwargs)
        except BaseException as exc:
            greenlet = getattr(self, "_greenlet", None)
            if greenlet is None or greenlet.ready():  # not a "not ready yet" timeout
                finish(exc)
            raise
        finish(None)
        return result

    functools.update_wrapper(get_result, func)
    return get_result


def _http_error(response: Any) -> BaseException | None:
    """The exception ``get_result()`` will raise for this HTTP response, or None."""
    try:
        from tritonclient.http._utils import _raise_if_error

        _raise_if_error(response)
    except Exception as exc:
        return exc
    return None


class TritonInstrumentor(ModeltelInstrumentor):
    """Client spans for ``tritonclient`` (HTTP, gRPC, and their asyncio clients)."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("triton")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        calls = _ClientCalls(self)
        # module -> (class, {method: make}): each class (and its subclasses) is wrapped when its module is imported
        table: dict[str, tuple[str, dict[str, Make]]] = {
            module: ("InferenceServerClient", {"infer": calls.infer(system), "async_infer": calls.async_infer(system)})
            for module, system in _CLIENT_MODULES.items()
        }
        table["tritonclient.http._client"] = ("InferAsyncRequest", {"get_result": _get_result_wrapper})
        for module_name, (class_name, makers) in table.items():
            self.when_imported(module_name, patches, functools.partial(_patch_class, patches, class_name, makers))


def _patch_class(patches: Patches, class_name: str, makers: dict[str, Make], module: Any) -> None:
    cls = getattr(module, class_name, None)
    if cls is not None:
        patch_hierarchy(patches, cls, makers)
