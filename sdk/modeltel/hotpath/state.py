"""What the hot path keeps per context.

modeltel's nesting state is one ``ContextVar`` holding the innermost active :class:`~.stage.Stage`, so a
stage finds its model and whether its trace is sampled without touching OpenTelemetry's context.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stage import Stage

current: ContextVar[Stage | None] = ContextVar("modeltel_frame", default=None)


def current_stage() -> str | None:
    """The canonical name of the innermost active modeltel stage, or None (instrumentors use this)."""
    frame = current.get()
    return frame.stage if frame is not None else None


def in_prediction() -> bool:
    """Whether a modeltel prediction or stage is active in this context."""
    return current.get() is not None


def detach_from_prediction() -> None:
    """Forget the active modeltel prediction and stage in the current context.

    For work that outlives the request it started in and must not count under it: a batch loop that a
    framework starts from the first request's context, for instance (run it in a copied context).
    """
    current.set(None)
