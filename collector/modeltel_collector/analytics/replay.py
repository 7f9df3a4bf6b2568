"""Replay a prediction log through the engine: the collector's detectors and settings, on a file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .engine import Engine, Event, Reference
from .logs import BadRow, Row
from .settings import Settings


@dataclass
class Replay:
    events: list[Event] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    engine: Engine | None = None


def replay(
    rows: Iterable[Row | BadRow],
    settings: Settings | None = None,
    baselines: dict[tuple[str, str], Reference] | None = None,
) -> Replay:
    """Every alarm event the rows raise, in order, and every row skipped with why.

    A row older than the windows already evaluated is skipped as out of order: the engine's windows only
    move forward, as in the collector.
    """
    engine = Engine(settings, baselines)
    out = Replay(engine=engine)
    last = None
    for row in rows:
        if isinstance(row, BadRow):
            out.bad.append(row)
            continue
        try:
            out.events += engine.observe(
                row.time,
                row.model,
                row.version,
                row.latency,
                ok=row.ok,
                confidence=row.confidence,
                correct=row.correct,
                line=row.line,
            )
        except ValueError as exc:
            out.bad.append(BadRow(row.line, str(exc)))
            continue
        last = row.time
    if last is not None:
        out.events += engine.advance(last + engine.settings.step_s)  # evaluate the last bucket too
    return out
