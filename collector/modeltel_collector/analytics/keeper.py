"""The collector's baselines on disk: captured on their own once a model version is stable, checked for age.

Why automatic: the monitoring spec's "stale baselines" pitfall. A new model version gets a baseline once it
has run ``stable_s`` without an open alarm and with a full learned reference; an existing version's entry
is not replaced behind the operator's back (``modeltel baseline capture`` does that on purpose). Each
model version's baseline is reported as ``ok``, ``missing`` (none yet) or ``stale`` (older than
``max_age_s``). A file that fails validation is reported and left alone: nothing is written over it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import baseline as bl
from .engine import Engine
from .reference import Reference

log = logging.getLogger(__name__)


class BaselineKeeper:
    def __init__(self, path: str | Path, *, stable_s: float = 3600.0, max_age_s: float = 7 * 86400.0) -> None:
        self.path, self.stable_s, self.max_age_s = Path(path), stable_s, max_age_s
        self.error: str | None = None
        self.doc: dict = {"schema": bl.SCHEMA, "models": []}
        self.stable_since: dict[tuple[str, str], float] = {}
        if self.path.exists():
            try:
                self.doc = bl.load(self.path)
            except (OSError, ValueError) as exc:
                self.error = f"{self.path}: {exc}"
                log.error("baseline file not used and never overwritten: %s", self.error)

    def entry(self, model: str, version: str) -> dict | None:
        return next((m for m in self.doc["models"] if (m["model_name"], m["model_version"]) == (model, version)), None)

    def update(self, engine: Engine, now: float) -> list[tuple[str, str]]:
        """Capture baselines for versions stable long enough; returns the (model, version) pairs captured."""
        captured = []
        for key, w in engine.models.items():
            if w.episodes or key not in self.stable_since:
                self.stable_since[key] = now  # an alarm (or first sight) restarts the stability clock
                continue
            full = w.reference.full()
            if self.error is None and full and now - self.stable_since[key] >= self.stable_s and not self.entry(*key):
                ref = w.reference.now()
                if ref is not None:
                    self.doc["models"].append(entry_from_reference(*key, ref, now))
                    captured.append(key)
        if captured:
            bl.save(self.doc, self.path)
            log.info("baselines captured for %s", ", ".join(f"{m} {v}" for m, v in captured))
        return captured

    def status(self, model: str, version: str, now: float) -> tuple[str, float | None]:
        """('ok' | 'missing' | 'stale' | 'corrupt', age in seconds or None)."""
        if self.error is not None:
            return "corrupt", None
        entry = self.entry(model, version)
        if entry is None:
            return "missing", None
        age = now - entry["window"]["end"]
        return ("stale" if age > self.max_age_s else "ok"), age


def entry_from_reference(model: str, version: str, ref: Reference, end: float) -> dict:
    """A baseline entry from the engine's learned reference (its samples are a thinned, uniform subsample)."""
    window = (end - ref.seconds, end)
    return bl.make_entry(
        model, version, window, ref.latencies, ref.confidence, (ref.total, ref.errors), (ref.labelled, ref.correct)
    )
