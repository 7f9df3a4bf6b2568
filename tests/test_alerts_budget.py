"""Error-budget arithmetic against cases computed by hand (the seed's formula is not the reference)."""

from __future__ import annotations

import json

import pytest

from modeltel.cli.slo_budget import budget, sla_credit
from modeltel.cli.slo_report import Report, Row, render


def test_availability_half_spent() -> None:
    # 99.9 %: 0.1 % of events may fail; 0.05 % failed over the period -> half the budget used
    b = budget(0.999, 0.0005, {"1h": 0.0144, "3d": 0.0005}, slowest_window="3d", events=1_000_000)
    assert b.total == pytest.approx(0.001)
    assert b.actual == pytest.approx(0.9995)
    assert b.consumed == pytest.approx(0.5)
    assert b.remaining == pytest.approx(0.5)
    assert b.burn_rates == {"1h": pytest.approx(14.4), "3d": pytest.approx(0.5)}
    assert b.allowed_bad_events == pytest.approx(1000) and b.bad_events == pytest.approx(500)
    assert b.status == "healthy"


def test_latency_slo_at_risk_and_exhausted() -> None:
    # 95 % under 100 ms: 5 % may be slow. 4 % slow -> 80 % used, 20 % left: at risk (<= 25 % left)
    b = budget(0.95, 0.04, {})
    assert (b.consumed, b.remaining, b.status) == (pytest.approx(0.8), pytest.approx(0.2), "at risk")
    # 7.5 % slow -> 150 % used: overspent by half
    b = budget(0.95, 0.075, {})
    assert (b.consumed, b.remaining, b.status) == (pytest.approx(1.5), pytest.approx(-0.5), "exhausted")


def test_burning_faster_than_the_period_allows_is_at_risk_with_budget_left() -> None:
    # error_rate_slo, at most 1 % errors: the period used 30 % of the budget, but the last 3 days burn at 2x
    b = budget(0.99, 0.003, {"3d": 0.02}, slowest_window="3d")
    assert b.remaining == pytest.approx(0.7)
    assert b.burn_rates["3d"] == pytest.approx(2.0)
    assert b.status == "at risk"


def test_the_seed_error_rate_slo_reads_the_right_way_round() -> None:
    # the seed wrote target 0.01 / budget 0.99 for "error rate below 1 %"; ours: objective 0.99, budget 0.01.
    # 0.5 % errors is half the budget, not 0.5 % / 99 % = 0.5 % of it.
    assert budget(0.99, 0.005, {}).consumed == pytest.approx(0.5)


def test_bad_objective_is_refused() -> None:
    with pytest.raises(ValueError, match="objective"):
        budget(99.9, 0.001, {})


@pytest.mark.parametrize(
    ("availability", "credit"), [(0.9996, 0), (0.996, 0), (0.995, 0), (0.993, 10), (0.99, 10), (0.985, 25)]
)
def test_sla_credit_tiers(availability: float, credit: float) -> None:
    # enterprise tier: below 99.5 % -> 10 %, below 99 % -> 25 %
    assert sla_credit(availability, [(0.995, 10), (0.99, 25)]) == credit


def test_render_formats() -> None:
    row = Row("availability_slo", "99.9% succeed", "30d", ("fraud", "v2"), budget(0.999, 0.0005, {"1h": 0.001}))
    report = Report(0.0, "http://prom", [row], [])
    table = render(report, "table")
    assert "availability_slo (30d)" in table and "fraud v2" in table and "50 %" in table and "healthy" in table
    md = render(report, "markdown")
    assert md.startswith("# SLO compliance report") and "| availability_slo (30d) | fraud v2 |" in md
    data = json.loads(render(report, "json"))
    assert data["slos"][0]["budget"]["consumed"] == pytest.approx(0.5)
    assert data["slos"][0]["model"] == ["fraud", "v2"]
