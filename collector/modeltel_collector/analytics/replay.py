"""Replay a prediction log (and, optionally, a file of its delayed labels) through the engine: the
collector's detectors and settings, on a file."""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from .engine import Engine, Event, Reference
from .logs import BadRow, Label, Row
from .settings import Settings

MAX_PENDING = 1_000_000  # predictions with an id kept for their label (~200 MB at most); the oldest go first


@dataclass
class Replay:
    events: list[Event] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    engine: Engine | None = None
    labels_joined: int = 0
    unknown_labels: int = 0  # labels naming no prediction seen before them: counted, never joined by guess
    evicted: int = 0  # predictions pushed out of the pending table before any label came

    def notes(self) -> list[str]:
        """What the reader should know once: models with no accuracy verdict for want of labels, and labels
        that joined nothing."""
        out = []
        for (model, version), w in sorted((self.engine.models if self.engine else {}).items()):
            if not w.labels:
                out.append(f"{model} {version}: no labels, so no accuracy verdict (estimated accuracy only)")
        if self.unknown_labels:
            out.append(f"{self.unknown_labels} labels named no known prediction: counted, not joined")
        if self.evicted:
            out.append(f"{self.evicted} predictions waited longer than {MAX_PENDING} others for a label: dropped")
        return out

    def models(self) -> list[dict]:
        """Per model version at the end: the accuracy estimated from confidence (with its band) next to the
        realized accuracy of the labels (of the reference, and since the CUSUM's change point)."""
        out = []
        for (model, version), w in sorted((self.engine.models if self.engine else {}).items()):
            est = w.results.get("estimated_accuracy_drop")
            ref = w.reference_now()
            out.append({
                "model_name": model,
                "model_version": version,
                "labels": w.labels,
                "estimated_accuracy": est.details.get("estimate") if est else None,
                "estimated_accuracy_band": [est.details.get("low"), est.details.get("high")] if est else None,
                "reference_accuracy": ref.correct / ref.labelled if ref is not None and ref.labelled else None,
                "accuracy_since_change": w.accuracy.since_correct / w.accuracy.since_n if w.accuracy.since_n else None,
            })  # fmt: skip
        return out


def _key(item: Row | Label | BadRow) -> float:
    return -math.inf if isinstance(item, BadRow) else item.time


def replay(
    rows: Iterable[Row | BadRow],
    settings: Settings | None = None,
    baselines: dict[tuple[str, str], Reference] | None = None,
    labels: Iterable[Label | BadRow] = (),
    labels_file: str = "labels",
) -> Replay:
    """Every alarm event the rows (and the labels, at the times they arrived) raise, in order, and every row
    skipped with why.

    A row older than the windows already evaluated is skipped as out of order: the engine's windows only
    move forward, as in the collector. A label joins the prediction with its id seen before it; one naming
    no such prediction is counted in ``unknown_labels`` and reported, never matched by guess.
    """
    engine = Engine(settings, baselines)
    out = Replay(engine=engine)
    pending: OrderedDict[str, Row] = OrderedDict()
    last = None
    for item in heapq.merge(_until_end(rows, engine), labels, key=_key):
        if isinstance(item, BadRow):
            out.bad.append(item)
            continue
        try:
            if isinstance(item, Label):
                out.events += _join(engine, out, pending, item, labels_file)
            else:
                out.events += engine.observe(
                    item.time, item.model, item.version, item.latency, ok=item.ok,
                    confidence=item.confidence, correct=item.correct, line=item.line,
                    ttft=item.ttft, tpot=item.tpot, output_tokens=item.output_tokens,
                )  # fmt: skip
                if item.pid:
                    pending[item.pid] = item
                    if len(pending) > MAX_PENDING:
                        pending.popitem(last=False)
                        out.evicted += 1
        except ValueError as exc:
            out.bad.append(BadRow(item.line, str(exc), labels_file if isinstance(item, Label) else None))
            continue
        last = item.time if last is None else max(last, item.time)
    if last is not None:
        out.events += engine.advance(last + engine.settings.step_s)  # evaluate the last bucket too
    return out


def _until_end(rows: Iterable[Row | BadRow], engine: Engine):
    """The log's rows; at its end the engine learns that traffic stopped there (labels may go on)."""
    last = None
    for row in rows:
        last = max(row.time, last if last is not None else row.time) if isinstance(row, Row) else last
        yield row
    if last is not None:
        engine.traffic_ended(last)


def _join(engine: Engine, out: Replay, pending: OrderedDict, label: Label, labels_file: str) -> list[Event]:
    row = pending.pop(label.pid, None)
    correct = label.correct
    if row is not None and correct is None:
        correct = None if row.prediction is None else label.label == row.prediction
    if row is None or correct is None:
        out.unknown_labels += 1
        why = f"no prediction with id {label.pid!r} before it" if row is None else "no predicted value to compare"
        out.bad.append(BadRow(label.line, f"label not joined: {why}", labels_file))
        return engine.advance(label.time)
    out.labels_joined += 1
    return engine.label(label.time, row.model, row.version, correct=correct, confidence=row.confidence)
