"""The per-request hot path: stages, predictions, their bound series, light spans and fast metrics.

Everything a request pays for lives here, and nothing here imports the export plumbing
(:mod:`modeltel.export`) or the instrumentors: what the hot path records reaches exporters through
objects handed to it (a recorder, a span factory), never through an import. ``benchmarks/overhead.py``
prints what it costs.
"""

from .generation import Generation, current_generation
from .prediction import Prediction
from .stage import Stage
from .state import current_stage, detach_from_prediction, in_prediction
from .telemetry import Telemetry, global_telemetry, telemetry_for
from .wrapping import wrap

__all__ = [
    "Generation",
    "Prediction",
    "Stage",
    "Telemetry",
    "current_generation",
    "current_stage",
    "detach_from_prediction",
    "global_telemetry",
    "in_prediction",
    "telemetry_for",
    "wrap",
]
