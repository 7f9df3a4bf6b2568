"""BentoML (1.2+ "new style" services): each ``@bentoml.api`` method as a prediction with an inference stage.

Where: BentoML turns an ``@bentoml.api`` method into an ``APIMethod`` descriptor whose ``__get__``
builds a local caller through ``APIMethod._local_call``; that caller calls ``APIMethod.func`` (the user's
function) at call time. BentoML's HTTP server reaches the method the same way
(``getattr(service_instance, name)``, batched calls included), so does ``svc().predict(...)`` in
process. The instrumentor patches ``APIMethod._local_call`` once (class ``__dict__``) and, the first
time each API method is reached, replaces that method's ``func`` with a kind-preserving wrapper; so
services defined before or after ``instrument()`` are covered, and ``uninstrument()`` puts every ``func``
and ``_local_call`` back exactly.

Mapping: each call -> the prediction (taking over an HTTP instrumentor's request prediction, as KServe's
does; an API calling another API of the same process is one prediction) with the ``inference`` stage
inside it. Model name: the service's name
(``@bentoml.service(name=...)``, default the class name); version: the environment's. Adaptive
batching: for ``batchable=True`` APIs the batch that BentoML's dispatcher formed (the first argument) is
measured and recorded (``model.batch_size`` + span attribute). Streaming (generator) APIs span the
stream.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

import modeltel
from modeltel import taxonomy as tx

from ._common import ORIGINAL_ATTR, _Guarded, batch_len, framework_wrapper, preserve_kind, stage_attributes

_lock = threading.Lock()
# A BentoML API call is running in this context: an API calling another API is one prediction.
_in_api: ContextVar[bool] = ContextVar("modeltel_bentoml_api", default=False)


def _service_name(instance: Any) -> str | None:
    svc = getattr(instance, "bento_service", None)  # set by Service.__call__ (BentoML >= 1.3)
    name = getattr(svc, "name", None)
    if isinstance(name, str):
        return name
    return type(instance).__name__


def _model_of(instance: Any) -> tuple[str | None, str | None]:
    return _service_name(instance), None


def _batch_of(args: tuple, kwargs: dict) -> int | None:
    if len(args) > 1:
        return batch_len(args[1])
    for value in kwargs.values():  # the one batch argument, passed by name
        if value is not None and not isinstance(value, str | bytes | dict):
            return batch_len(value)
    return None


def _wrap_api(method: Any) -> Any:
    func = method.func
    name = getattr(method, "name", None) or getattr(func, "__name__", "api")
    attributes = stage_attributes("bentoml", name)
    batched = bool(getattr(method, "batchable", False))
    inner = framework_wrapper(
        "bentoml", name, tx.STAGE_INFERENCE, model_of=_model_of, batch_of=_batch_of if batched else None
    )(func, None)

    def enter(args: tuple, kwargs: dict) -> Any:
        if not args or _in_api.get():
            return None
        return _Guarded(modeltel.prediction(_service_name(args[0]), attributes=attributes), _in_api, True)

    wrapper = preserve_kind(inner, enter)
    setattr(wrapper, ORIGINAL_ATTR, func)
    return wrapper


class BentoMLInstrumentor(BaseInstrumentor):
    _original_local_call: Any = None
    _wrapped: list[tuple[Any, Any, Any]] | None = None  # (APIMethod, original func, wrapper)

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("bentoml >= 1.3, < 2",)

    def _instrument(self, **kwargs: Any) -> None:
        from _bentoml_sdk.method import APIMethod

        original = APIMethod.__dict__["_local_call"]
        wrapped: list[tuple[Any, Any, Any]] = []

        def _local_call(self: Any, instance: Any) -> Any:
            if getattr(self.func, ORIGINAL_ATTR, None) is None:
                with _lock:
                    if getattr(self.func, ORIGINAL_ATTR, None) is None:
                        func = self.func
                        self.func = _wrap_api(self)
                        wrapped.append((self, func, self.func))
            return original(self, instance)

        _local_call.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(_local_call, ORIGINAL_ATTR, original)
        APIMethod._local_call = _local_call
        BentoMLInstrumentor._original_local_call = original
        BentoMLInstrumentor._wrapped = wrapped

    def _uninstrument(self, **kwargs: Any) -> None:
        from _bentoml_sdk.method import APIMethod

        original = BentoMLInstrumentor._original_local_call
        if original is None:
            return
        current = APIMethod.__dict__.get("_local_call")
        if getattr(current, ORIGINAL_ATTR, None) is original:
            APIMethod._local_call = original
        with _lock:
            for method, func, wrapper in reversed(BentoMLInstrumentor._wrapped or []):
                if method.func is wrapper:
                    method.func = func
        BentoMLInstrumentor._original_local_call = None
        BentoMLInstrumentor._wrapped = None
