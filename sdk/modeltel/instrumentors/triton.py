"""NVIDIA Triton: client spans for ``tritonclient`` inference calls, and the Python backend's ``execute``.

**Client** (``TritonInstrumentor``): ``infer`` and ``async_infer`` of the HTTP and gRPC
``InferenceServerClient`` (``tritonclient.http`` / ``tritonclient.grpc``) and ``infer`` of their asyncio
clients (``tritonclient.http.aio`` / ``tritonclient.grpc.aio``). Each call gets

* a CLIENT-kind span ``triton.infer <model>`` from the ``modeltel.triton`` tracer, with ``model.name`` /
  ``model.version`` from the call's ``model_name`` / ``model_version`` arguments and the batch size (first
  input's ``shape()[0]``) as ``modeltel.batch.size``; an error sets its status and is recorded on it;
* the W3C trace context of that span injected into the request ``headers`` (a copy of the caller's dict,
  or a new one), so a traced Triton server continues the trace (HTTP headers; gRPC metadata);
* when no modeltel stage is active, the ``inference`` stage of that model around it (stage latency,
  batch size histogram; errors by type when a prediction is around it, see docs/metrics.md); inside an
  active stage, only the client span, as its child, so the request is counted once.

``async_infer`` (HTTP: a gevent greenlet; gRPC: a callback) is timed until the response arrives: the
stage and span are entered in a copy of the caller's context and closed from the completion callback,
so the caller's context never sees them. Exceptions go through unchanged.

The tritonclient modules are patched when they are imported, not when the instrumentor loads.

**Python backend**: Triton loads ``model.py`` by path inside its stub process, so no import hook can
find the ``TritonPythonModel`` class; one line does it: decorate the class with
:func:`instrument_python_model`. ``execute(requests)`` becomes a prediction (batch size =
``len(requests)``), named by the ``model_name`` / ``model_version`` Triton passes to ``initialize``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

import modeltel
from modeltel import taxonomy as tx

from .base import ORIGINAL_ATTR, ModeltelInstrumentor, Patches, Scope, stage_attributes, wrap

TRACER_NAME = "modeltel.triton"
# module -> protocol; each module's InferenceServerClient is patched when the module is imported
_CLIENT_MODULES = {
    "tritonclient.http": "http",
    "tritonclient.http.aio": "http",
    "tritonclient.grpc": "grpc",
    "tritonclient.grpc.aio": "grpc",
}
_METHODS = ("infer", "async_infer")
_STAGE_ATTRIBUTES = stage_attributes("triton", "infer")


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


class _Call:
    """One client inference: optional inference stage, client span, headers carrying its context."""

    __slots__ = ("span", "stage")

    def __init__(self) -> None:
        self.stage: Any = None
        self.span: Any = None

    def start(
        self, t: modeltel.Telemetry, tracer: trace.Tracer, system: str, model: Any, version: Any, batch: int | None
    ) -> dict[str, Any]:
        """Open the stage (if none is active) and the span in the current context; the headers to inject."""
        version = version if isinstance(version, str) and version else None
        if modeltel.current_stage() is None:
            self.stage = t.stage(
                tx.STAGE_INFERENCE,
                model_name=model if isinstance(model, str) else None,
                model_version=version,
                attributes=_STAGE_ATTRIBUTES,
            )
            s = self.stage.__enter__()
            if batch is not None:
                s.set_batch_size(batch)
        attributes: dict[str, Any] = {
            tx.SPAN_ATTR_FRAMEWORK: "triton",
            tx.SPAN_ATTR_FRAMEWORK_STAGE: "infer",
            "rpc.system": "grpc" if system == "grpc" else "http",
            tx.ATTR_MODEL_NAME: str(model),
        }
        if version is not None:
            attributes[tx.ATTR_MODEL_VERSION] = version
        if batch is not None:
            attributes[tx.SPAN_ATTR_BATCH_SIZE] = batch
        self.span = tracer.start_span(f"triton.infer {model}", kind=SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, Any] = {}
        ctx = trace.set_span_in_context(self.span) if self.span.get_span_context().is_valid else None
        propagate.inject(carrier, context=ctx)
        return carrier

    def finish(self, exc: BaseException | None) -> None:
        """Close the span and stage (once: later calls do nothing)."""
        span, stage = self.span, self.stage
        self.span = self.stage = None
        if span is not None:
            if exc is not None:
                span.record_exception(exc, escaped=True)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
        if stage is not None:
            stage.__exit__(type(exc) if exc is not None else None, exc, None)


def _with_headers(args: tuple, kwargs: dict, index: int, carrier: dict[str, Any]) -> tuple[tuple, dict]:
    """``args``/``kwargs`` with the ``headers`` argument replaced by a copy merged with ``carrier``."""
    if not carrier:
        return args, kwargs
    if 0 <= index < len(args):
        headers = {**(args[index] or {}), **carrier}
        return (*args[:index], headers, *args[index + 1 :]), kwargs
    return args, {**kwargs, "headers": {**(kwargs.get("headers") or {}), **carrier}}


class _Wrapping:
    """Builds the wrappers of one instrumentor (they share its tracer)."""

    def __init__(self, instrumentor: ModeltelInstrumentor) -> None:
        self._instrumentor = instrumentor
        self._cached: tuple[Any, trace.Tracer] | None = None

    def tracer(self) -> trace.Tracer:
        provider = self._instrumentor.tracer_provider()
        cached = self._cached
        if cached is None or cached[0] is not provider:
            cached = self._cached = (provider, trace.get_tracer(TRACER_NAME, modeltel.__version__, provider))
        return cached[1]

    def make(self, system: str, method: str) -> Callable[[Callable[..., Any], Any], Callable[..., Any]]:
        def make(func: Callable[..., Any], owner: Any) -> Callable[..., Any]:
            names = list(inspect.signature(func).parameters)
            where = {n: names.index(n) if n in names else -1 for n in ("model_name", "inputs", "model_version")}
            i_headers = names.index("headers") if "headers" in names else -1
            i_callback = names.index("callback") if "callback" in names else -1

            def start(args: tuple, kwargs: dict) -> tuple[_Call, tuple, dict]:
                call = _Call()
                model = _arg(args, kwargs, where["model_name"], "model_name")
                version = _arg(args, kwargs, where["model_version"], "model_version", "")
                batch = _batch_of(_arg(args, kwargs, where["inputs"], "inputs"))
                try:
                    carrier = call.start(self._instrumentor.telemetry(), self.tracer(), system, model, version, batch)
                except Exception:  # a monitoring bug must not reach the caller
                    return call, args, kwargs
                return call, *_with_headers(args, kwargs, i_headers, carrier)

            if inspect.iscoroutinefunction(func):

                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    call, args, kwargs = start(args, kwargs)
                    try:
                        result = await func(*args, **kwargs)
                    except BaseException as exc:
                        call.finish(exc)
                        raise
                    call.finish(None)
                    return result

                wrapper = async_wrapper
            elif method == "async_infer" and i_callback >= 0:
                wrapper = self._grpc_async(func, start, i_callback)
            elif method == "async_infer":
                wrapper = self._http_async(func, start)
            else:

                def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                    call, args, kwargs = start(args, kwargs)
                    try:
                        result = func(*args, **kwargs)
                    except BaseException as exc:
                        call.finish(exc)
                        raise
                    call.finish(None)
                    return result

                wrapper = sync_wrapper
            wrapper.__wrapped__ = func  # type: ignore[attr-defined]
            for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
                setattr(wrapper, attr, getattr(func, attr))
            return wrapper

        return make

    @staticmethod
    def _grpc_async(func: Callable[..., Any], start: Any, i_callback: int) -> Callable[..., Any]:
        """gRPC ``async_infer(..., callback, ...)``: closed when tritonclient calls ``callback(result, error)``."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = contextvars.copy_context()
            call, args, kwargs = ctx.run(start, args, kwargs)
            callback = _arg(args, kwargs, i_callback, "callback")

            def done(*cb_args: Any, **cb_kwargs: Any) -> Any:
                error = cb_kwargs.get("error", cb_args[1] if len(cb_args) > 1 else None)
                ctx.run(call.finish, error if isinstance(error, BaseException) else None)
                return callback(*cb_args, **cb_kwargs)

            if 0 <= i_callback < len(args):
                args = (*args[:i_callback], done, *args[i_callback + 1 :])
            else:
                kwargs = {**kwargs, "callback": done}
            try:
                return func(*args, **kwargs)
            except BaseException as exc:
                ctx.run(call.finish, exc)
                raise

        return wrapper

    @staticmethod
    def _http_async(func: Callable[..., Any], start: Any) -> Callable[..., Any]:
        """HTTP ``async_infer``: closed when the request's greenlet finishes (on the gevent hub)."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = contextvars.copy_context()
            call, args, kwargs = ctx.run(start, args, kwargs)
            try:
                handle = func(*args, **kwargs)
            except BaseException as exc:
                ctx.run(call.finish, exc)
                raise
            greenlet = getattr(handle, "_greenlet", None)
            if greenlet is None or not hasattr(greenlet, "rawlink"):
                ctx.run(call.finish, None)  # unknown handle: time the dispatch only
                return handle

            def finish(exc: BaseException | None) -> None:
                if call.span is not None or call.stage is not None:
                    ctx.run(call.finish, exc)

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


_FINISH_ATTR = "_modeltel_finish"


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
        wrapping = _Wrapping(self)

        def hook_for(system: str) -> Callable[[Any], None]:
            def hook(module: Any) -> None:
                client = getattr(module, "InferenceServerClient", None)
                if client is None:
                    return
                for method in _METHODS:
                    patches.wrap(client, method, wrapping.make(system, method))
                if module.__name__ == "tritonclient.http":
                    import importlib

                    handle = getattr(importlib.import_module("tritonclient.http._client"), "InferAsyncRequest", None)
                    if handle is not None:
                        patches.wrap(handle, "get_result", _get_result_wrapper)

            return hook

        for module_name, system in _CLIENT_MODULES.items():
            self.when_imported(module_name, patches, hook_for(system))


# --------------------------------------------------------------------------------------------------
# Python backend
# --------------------------------------------------------------------------------------------------
_EXECUTE_ATTRIBUTES = stage_attributes("triton", "execute")
_MODEL_ATTR = "_modeltel_triton_model"
_EXECUTE_KEY = ("triton", "execute")


def instrument_python_model(cls: type) -> type:
    """Class decorator for a Triton Python backend model: ``execute(requests)`` becomes a prediction.

    Add it in ``model.py`` (``@instrument_python_model`` above ``class TritonPythonModel``). The model
    name / version are those Triton passes to ``initialize(args)`` (``args["model_name"]`` /
    ``args["model_version"]``), else the environment's; the batch size is ``len(requests)``. Works on
    any class with an ``execute`` method (sync or async); decorating twice is harmless.
    """
    init = cls.__dict__.get("initialize")
    if inspect.isfunction(init) and getattr(init, ORIGINAL_ATTR, None) is None:

        def make_init(func: Callable[..., Any]) -> Callable[..., Any]:
            def enter(args: tuple, kwargs: dict) -> Any:
                if len(args) > 1 and isinstance(args[1], dict):
                    name, version = args[1].get("model_name"), args[1].get("model_version")
                    with contextlib.suppress(AttributeError):  # __slots__ without room for it
                        setattr(args[0], _MODEL_ATTR, (name or None, str(version) if version else None))
                return None

            return wrap(func, enter)

        wrapped_init = make_init(init)
        setattr(wrapped_init, ORIGINAL_ATTR, init)
        cls.initialize = wrapped_init  # type: ignore[attr-defined]

    execute = cls.__dict__.get("execute")
    if execute is None:
        execute = getattr(cls, "execute", None)
    if not inspect.isfunction(execute):
        raise TypeError(f"{cls.__name__} has no execute(self, requests) method to instrument")
    if getattr(execute, ORIGINAL_ATTR, None) is not None:
        return cls

    def enter(args: tuple, kwargs: dict) -> Any:
        if not args:
            return None
        name, version = getattr(args[0], _MODEL_ATTR, (None, None))
        requests = args[1] if len(args) > 1 else kwargs.get("requests")
        try:
            n = len(requests)
        except TypeError:
            n = None
        prediction = modeltel.prediction(name, version, attributes=_EXECUTE_ATTRIBUTES)
        return Scope(_EXECUTE_KEY, (prediction,), n)

    wrapped = wrap(execute, enter)
    setattr(wrapped, ORIGINAL_ATTR, execute)
    cls.execute = wrapped  # type: ignore[attr-defined]
    return cls
