"""Triton's Python backend: :func:`instrument_python_model`, the class decorator that makes
``TritonPythonModel.execute(requests)`` a prediction (:mod:`modeltel.instrumentors.triton` says why it is
a decorator: Triton loads ``model.py`` by path, where no import hook finds it)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import modeltel

from ..base import ORIGINAL_ATTR, Scope, stage_attributes, wrap

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
