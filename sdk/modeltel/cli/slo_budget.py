"""Error-budget arithmetic, pure: what ``modeltel slo report`` prints, testable against hand-computed cases.

The budget is the share of events (or of time, for a threshold SLO) allowed to be bad: ``1 - objective``.
Consumed is the share of that budget the period's bad events used: ``error_ratio / budget``. The seed
divided a rate of a latency histogram by a rate of predictions and gave error_rate_slo a "budget" of
0.99; here every SLO's error ratio is bad / total of the same events, and the budget follows the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AT_RISK_REMAINING", "Budget", "budget", "sla_credit"]

AT_RISK_REMAINING = 0.25  # at risk once a quarter of the budget or less is left ...
SUSTAINABLE_BURN = 1.0  # ... or when the slowest alert window burns faster than the period allows


@dataclass(frozen=True)
class Budget:
    """One SLO for one model over its period."""

    target: float  # objective, e.g. 0.999
    actual: float  # good share over the period, e.g. 0.9995
    total: float  # error budget as a share of events (or time), e.g. 0.001
    consumed: float  # share of the budget used, e.g. 0.5 (above 1: overspent)
    remaining: float  # 1 - consumed (negative: overspent)
    burn_rates: dict[str, float]  # window -> error ratio over the window / budget
    status: str  # healthy | at risk | exhausted
    events: float | None = None  # events in the period (ratio SLOs), for budget in events

    @property
    def allowed_bad_events(self) -> float | None:
        return None if self.events is None else self.events * self.total

    @property
    def bad_events(self) -> float | None:
        return None if self.events is None else self.events * (1 - self.actual)


def budget(
    objective: float,
    period_error_ratio: float,
    window_error_ratios: dict[str, float],
    *,
    slowest_window: str | None = None,
    events: float | None = None,
) -> Budget:
    """The budget of an SLO with ``objective`` whose error ratio over its period is ``period_error_ratio``.

    ``window_error_ratios`` are the error ratios over the burn-rate windows; ``slowest_window`` is the
    longest alerting window (3d for a 30-day SLO): burning faster than 1x there puts the SLO at risk.
    """
    if not 0 < objective < 1:
        raise ValueError(f"objective must be in (0, 1), got {objective}")
    allowed = 1 - objective
    consumed = period_error_ratio / allowed
    remaining = 1 - consumed
    burns = {w: r / allowed for w, r in window_error_ratios.items() if not math.isnan(r)}
    if remaining <= 0:
        status = "exhausted"
    elif remaining <= AT_RISK_REMAINING or burns.get(slowest_window or "", 0.0) > SUSTAINABLE_BURN:
        status = "at risk"
    else:
        status = "healthy"
    return Budget(objective, 1 - period_error_ratio, allowed, consumed, remaining, burns, status, events)


def sla_credit(availability: float, penalties: list[tuple[float, float]]) -> float:
    """Service credit (percent) due for ``availability``: the largest credit whose threshold it is below.

    ``penalties`` are (breach_threshold, credit_percentage), e.g. [(0.995, 10), (0.99, 25)]: 0.993 earns
    10 %, 0.985 earns 25 %, 0.996 earns nothing (though it may still miss the SLA's 99.95 % objective).
    """
    due = [credit for threshold, credit in penalties if availability < threshold]
    return max(due, default=0.0)
