"""BentoML (1.2+ "new style" services): each ``@bentoml.api`` method as a prediction with an inference stage.

Where: BentoML turns an ``@bentoml.api`` method into an ``APIMethod`` descriptor whose ``__get__``
builds a local caller through ``APIMethod._local_call``; that caller calls ``APIMethod.func`` (the user's
function) at call time. BentoML's HTTP server reaches the method the same way
(``getattr(service_instance, name)``, batched calls included), so does ``svc().predict(...)`` in
process. The instrumentor patches ``APIMethod._local_call`` once and, the first time each API method is reached,
replaces that method's ``func`` with a kind-preserving wrapper, both through the instrumentor's
:class:`~.patching.Patches`; so services defined before or after ``instrument()`` are covered, and
``uninstrument()`` puts every ``func`` and ``_local_call`` back exactly.

Mapping: each call -> the prediction (taking over an HTTP instrumentor's request prediction, as KServe's
does; an API calling another API of the same process is one prediction) with the ``inference`` stage
inside it. Model name: the service's name
(``@bentoml.service(name=...)``, default the class name); version: the environment's. Adaptive
batching: for ``batchable=True`` APIs the batch that BentoML's dispatcher formed (the first argument) is
measured and recorded (``model.batch_size`` + span attribute). A streaming (generator or async
generator) API is a generation (``docs/generative-serving.md``): each yielded item counts as a token, the
first one is time to first token, the inference stage spans the stream inside it, and a consumer that
stops early (BentoML closing the stream when the client leaves) makes it ``cancelled``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Collection
from typing import Any

import modeltel
from modeltel import taxonomy as tx

from .base import ORIGINAL_ATTR, ModeltelInstrumentor, Patches, batch_len, stage_attributes


def _service_name(instance: Any) -> str | None:
    svc = getattr(instance, "bento_service", None)  # set by Service.__call__ (BentoML >= 1.3)
    name = getattr(svc, "name", None)
    if isinstance(name, str):
        return name
    return type(instance).__name__


def _model_of(args: tuple, kwargs: dict) -> tuple[str | None, str | None]:
    return _service_name(args[0]), None


def _batch_of(args: tuple, kwargs: dict) -> int | None:
    if len(args) > 1:
        return batch_len(args[1])
    for value in kwargs.values():  # the one batch argument, passed by name
        if value is not None and not isinstance(value, str | bytes | dict):
            return batch_len(value)
    return None


class BentoMLInstrumentor(ModeltelInstrumentor):
    patched_module = "_bentoml_sdk.method"

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.extra_requirements("bentoml")

    def _apply(self, patches: Patches, **kwargs: Any) -> None:
        from _bentoml_sdk.method import APIMethod

        original = APIMethod.__dict__["_local_call"]
        wrap_api = self._api_wrapper

        def _local_call(method: Any, instance: Any) -> Any:
            if getattr(method.func, ORIGINAL_ATTR, None) is None:
                with patches.lock:
                    if getattr(method.func, ORIGINAL_ATTR, None) is None:
                        patches.replace(method, "func", wrap_api(method))
            return original(method, instance)

        _local_call.__wrapped__ = original  # type: ignore[attr-defined]
        patches.replace(APIMethod, "_local_call", _local_call)

    def _api_wrapper(self, method: Any) -> Any:
        """The API method's ``func`` as a prediction with its inference stage (a batch size when batchable)."""
        func = method.func
        name = getattr(method, "name", None) or getattr(func, "__name__", "api")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            wrapper = self._stream_wrapper(func, name)
        else:
            batch_of = _batch_of if getattr(method, "batchable", False) else None
            stage = tx.STAGE_INFERENCE
            make = self.prediction_call("bentoml", name, model_of=_model_of, batch_of=batch_of, stage=stage)
            wrapper = make(func, None)
        setattr(wrapper, ORIGINAL_ATTR, func)
        return wrapper

    def _stream_wrapper(self, func: Any, name: str) -> Any:
        """A streaming API as a generation (each yielded item a token, the first one TTFT) with the inference
        stage inside it; a consumer that stops early makes it ``cancelled``."""
        stage = self.framework_stage("bentoml", name, tx.STAGE_INFERENCE)(func, None)
        telemetry, attributes = self._telemetry, stage_attributes("bentoml", name)

        def generation(args: tuple) -> modeltel.Generation:
            return telemetry().generation(_service_name(args[0]) if args else None, attributes=attributes)

        if inspect.isasyncgenfunction(func):

            async def astream(*args: Any, **kwargs: Any) -> Any:
                tokens = generation(args).stream(stage(*args, **kwargs))
                try:
                    async for item in tokens:
                        yield item
                finally:
                    await tokens.aclose()

            return functools.wraps(func)(astream)

        def stream(*args: Any, **kwargs: Any) -> Any:
            yield from generation(args).stream(stage(*args, **kwargs))

        return functools.wraps(func)(stream)
