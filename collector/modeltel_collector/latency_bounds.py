"""Whether a latency histogram's bucket bounds can hold the taxonomy's range.

The OpenTelemetry JS, Java, Go and .NET SDKs default to bounds made for milliseconds
(``[0, 5, 10, 25, ...]``). A latency recorded in seconds, as the taxonomy's names and units say, then
lands in the first bucket: 0.012 s reads as p50 = 2.5 s and p95 = 4.75 s, and nothing says why. The
rule: a seconds histogram of the taxonomy must have a positive bound at or below the latency SLO
threshold, else the SLO's good-request count and every quantile under its first bound read from one
bucket. The store warns and counts (``MetricStore``), the console flags the series (``serve.console``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from modeltel import taxonomy as tx
from modeltel_collector.translate import metric_family_name

# the taxonomy's latency histograms, by the family name the store files them under
LATENCY_FAMILIES = frozenset(
    metric_family_name(i.otel_name, i.unit)
    for i in tx.INSTRUMENTS
    if i.kind is tx.InstrumentKind.HISTOGRAM and i.unit == "s"
)
FINEST_NEEDED_S = tx.SLO_LATENCY_THRESHOLD_SECONDS
_FIX = (" (milliseconds-sized default buckets? record seconds into the taxonomy's LATENCY_BUCKETS_SECONDS as the"
        " histogram's explicit bucket boundaries)")  # fmt: skip


def bounds_problem(bounds: Iterable[float]) -> str | None:
    """Why a seconds histogram with these explicit bounds cannot hold the taxonomy's range; None if it can."""
    first = next((b for b in bounds if b > 0), None)
    if first is not None and first <= FINEST_NEEDED_S:
        return None
    if first is None or math.isinf(first):
        return f"no positive bucket bound: every latency shares one bucket{_FIX}"
    return (
        f"first positive bucket bound is {first:g} s, above the {FINEST_NEEDED_S:g} s latency SLO threshold: "
        f"faster requests share one bucket and quantiles read as fractions of {first:g} s{_FIX}"
    )


def check_bounds(family: str, bounds: Iterable[float], res: Any, result: Any) -> None:
    """Count in ``result`` (a ``store.metrics.IngestResult``) a point of latency ``family`` whose bounds
    cannot hold the taxonomy's range, and the first time for resource ``res`` a warning that says so."""
    problem = bounds_problem(bounds)
    if problem is None:
        return
    result.unfit[family] = result.unfit.get(family, 0) + 1
    if family not in res.unfit:
        res.unfit.add(family)
        result.warnings.append(f"{family} from job={res.key[0]!r} instance={res.key[1]!r}: {problem}")
