"""The planning back-test's generator and its figures (bench/planning.py)."""

from __future__ import annotations

from bench.planning import backtest, generate


def test_generator_is_seeded_and_each_case_moves_forward_in_time():
    first, again = generate(7), generate(7)
    assert [h.milestones for h in first] == [h.milestones for h in again]
    assert len(first) > 300
    for h in first:
        times = list(h.milestones.values())
        assert times == sorted(times)


def test_backtest_coverage_of_the_90_percent_bound_is_in_target():
    history = generate(12)
    for since in ("ordered", "approved"):
        result = backtest(history, since)
        assert 0.85 <= result["coverage_of_90_percent_bound"] <= 0.95, result
        assert 0.4 <= result["share_ready_by_median"] <= 0.6, result
        assert result["median_absolute_error_h"] < result["actual_median_h"]
