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

Where ``FAST`` is true, a stage builds the new context itself (``Context(current)`` and
``set_item(new, SPAN_KEY, span)``, what ``set_span_in_context`` does, without its frames) and resets the
variable with ``reset`` (a foreign token raises: then :func:`detach` logs it, as OpenTelemetry's would).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import INVALID_SPAN_CONTEXT, SpanContext

_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_var = getattr(_runtime, "_current_context", None) if type(_runtime) is ContextVarsRuntimeContext else None
_SPAN_KEY = getattr(getattr(trace, "propagation", None), "_SPAN_KEY", None)


set_item = dict.__setitem__  # Context refuses item assignment; a copy and this is set_value's one copy


def _span_context_fast() -> SpanContext:
    span = _var.get().get(_SPAN_KEY)  # type: ignore[union-attr]
    if span is None or not isinstance(span, trace.Span):  # get_current_span's rule
        return INVALID_SPAN_CONTEXT
    return span.get_span_context()


def _span_context_api() -> SpanContext:
    return trace.get_current_span().get_span_context()


def _no_span_fast() -> bool:
    """True when no span is current (a root's case, told without building its invalid span context); False
    may still mean no valid one: the caller then reads :func:`current_span_context`."""
    return _var.get().get(_SPAN_KEY) is None  # type: ignore[union-attr]


def _no_span_api() -> bool:
    return not _span_context_api().is_valid


FAST = isinstance(_var, ContextVar) and type(_SPAN_KEY) is str
SPAN_KEY = _SPAN_KEY
with_span = trace.set_span_in_context  # where FAST is false (where it is, a stage does this itself)
detach = otel_context.detach  # logs a foreign token, as it always has
if FAST:
    get_current: Any = _var.get
    attach: Any = _var.set
    reset: Any = _var.reset  # type: ignore[union-attr]  (a foreign token raises: then ``detach``)
    current_span_context: Any = _span_context_fast
    no_current_span: Any = _no_span_fast
else:  # another runtime context, or moved internals: OpenTelemetry's API, as it is
    get_current = otel_context.get_current
    attach = otel_context.attach
    reset = otel_context.detach  # (logs a foreign token itself; never raises)
    current_span_context = _span_context_api
    no_current_span = _no_span_api
