"""OpenTelemetry's current context, read and set without its API's layers.

Every recorded stage makes its span current (``set_span_in_context``, ``attach``) and restores the
previous context at its end (``detach``); ``opentelemetry.context`` reaches the ``ContextVar`` that holds it
through two or three Python calls each time, and ``set_value`` copies the context dict twice. With
OpenTelemetry's default runtime context (``ContextVarsRuntimeContext``) this module uses that
``ContextVar`` directly and copies once: the same ``Context`` objects in the same variable, so OpenTelemetry's
own ``get_current()`` / ``get_current_span()`` (whose rule :func:`current_span_context` keeps) and every
propagator see exactly what they saw before. With
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
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext

_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_var = getattr(_runtime, "_current_context", None) if type(_runtime) is ContextVarsRuntimeContext else None
_SPAN_KEY = getattr(getattr(trace, "propagation", None), "_SPAN_KEY", None)


def _with_span_api(span: trace.Span, context: Context) -> Context:
    return trace.set_span_in_context(span, context)


def _with_span_fast(span: trace.Span, context: Context) -> Context:
    new = Context(context)
    dict.__setitem__(new, _SPAN_KEY, span)  # Context refuses item assignment; this is set_value's one copy
    return new


def _span_context_fast() -> SpanContext:
    span = _var.get().get(_SPAN_KEY)  # type: ignore[union-attr]
    if span is None or not isinstance(span, trace.Span):  # get_current_span's rule
        return INVALID_SPAN_CONTEXT
    return span.get_span_context()


def _span_context_api() -> SpanContext:
    return trace.get_current_span().get_span_context()


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
    current_span_context: Any = _span_context_fast
else:  # another runtime context, or moved internals: OpenTelemetry's API, as it is
    get_current = otel_context.get_current
    attach = otel_context.attach
    detach = otel_context.detach
    with_span = _with_span_api
    current_span_context = _span_context_api
