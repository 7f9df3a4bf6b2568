"""OpenTelemetry's current context, read and set without its API's layers.

Every recorded stage makes its span current (``set_span_in_context``, ``attach``) and restores the
previous context at its end (``detach``); ``opentelemetry.context`` reaches the ``ContextVar`` that holds it
through two or three Python calls each time, and ``set_value`` copies the context dict twice. With
OpenTelemetry's default runtime context (``ContextVarsRuntimeContext``) this module uses that
``ContextVar`` directly and copies once: the same ``Context`` objects in the same variable, so OpenTelemetry's
own ``get_current()`` / ``get_current_span()`` and every propagator see exactly what they saw before. With
any other runtime context (``OTEL_PYTHON_CONTEXT``), or where the private attributes read here have moved,
it calls OpenTelemetry's API instead.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_var = getattr(_runtime, "_current_context", None) if type(_runtime) is ContextVarsRuntimeContext else None
_SPAN_KEY = getattr(getattr(trace, "propagation", None), "_SPAN_KEY", None)


def _with_span_api(span: trace.Span, context: Context) -> Context:
    return trace.set_span_in_context(span, context)


def _with_span_fast(span: trace.Span, context: Context) -> Context:
    new = Context(context)
    dict.__setitem__(new, _SPAN_KEY, span)  # Context refuses item assignment; this is set_value's one copy
    return new


def _detach_fast(token: Token[Context]) -> None:
    try:
        _var.reset(token)  # type: ignore[union-attr]
    except Exception:  # a foreign token: OpenTelemetry's detach logs it, as it always has
        otel_context.detach(token)


if isinstance(_var, ContextVar) and type(_SPAN_KEY) is str:
    get_current: Any = _var.get
    attach: Any = _var.set
    detach: Any = _detach_fast
    with_span: Any = _with_span_fast
else:  # another runtime context, or moved internals: OpenTelemetry's API, as it is
    get_current = otel_context.get_current
    attach = otel_context.attach
    detach = otel_context.detach
    with_span = _with_span_api
