"""Lead-time forecast: quantiles of the lab's own history (issue 12, part 1)."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest

from pocprint.domain.lead_time import forecast, quantile, step_hours
from pocprint.reads.history import (
    case_forecast,
    order_forecast,
    print_ratios,
    released_devices,
    step_durations,
)
from pocprint.store.db import read_session
from pocprint.store.models import Case, utcnow

from planning_helpers import SHARES, past_device


def test_quantile_of_one_to_ten_is_the_textbook_value():
    values = list(range(1, 11))
    assert quantile(values, 0.5) == pytest.approx(5.5)
    assert quantile(values, 0.9) == pytest.approx(9.1)
    assert quantile([7.0], 0.9) == 7.0


def test_quantile_agrees_with_numpy_on_random_samples():
    rng = random.Random(12)
    for _ in range(50):
        values = [rng.uniform(0, 500) for _ in range(rng.randint(1, 40))]
        for q in (0.1, 0.5, 0.9):
            assert quantile(values, q) == pytest.approx(float(np.percentile(values, q * 100)))


def test_quantile_refuses_nothing_and_bad_levels():
    with pytest.raises(ValueError, match="no values"):
        quantile([], 0.5)
    with pytest.raises(ValueError, match="within 0 and 1"):
        quantile([1.0], 1.5)


def test_forecast_falls_back_from_same_kind_to_all_kinds_to_default():
    same = [10.0, 20.0, 30.0, 40.0, 50.0]
    every = same + [100.0, 200.0]
    first = forecast("surgical_guide", same, every, min_cases=5)
    assert (first.basis, first.cases, first.median_h) == ("same_kind", 5, 30.0)
    assert "5 past surgical guide cases" in first.explanation
    second = forecast("surgical_guide", same[:2], every, min_cases=5)
    assert (second.basis, second.cases) == ("all_kinds", 7)
    assert second.median_h == quantile(every, 0.5)
    assert second.p90_h == quantile(every, 0.9)
    third = forecast("surgical_guide", [], [1.0], default_median_h=48, default_p90_h=96)
    assert (third.basis, third.median_h, third.p90_h) == ("default", 48, 96)
    later = forecast("surgical_guide", [], [], since="finished", default_median_h=48)
    assert 0 < later.median_h < 48  # less remains once the print is done


def test_ready_times_never_lie_in_the_past():
    result = forecast("x", [10.0] * 5, [], min_cases=5)
    now = utcnow()
    median, p90 = result.ready(now - timedelta(hours=30), now)
    assert median == now and p90 == now
    median, p90 = result.ready(now)
    assert median - now == timedelta(hours=10)


def test_step_hours_splits_the_lead_time_by_milestone():
    start = utcnow()
    stones = {name: start + timedelta(hours=100 * share) for name, share in SHARES.items()}
    stones["ordered"] = start
    hours = step_hours(stones)
    assert hours["reviewed"] == pytest.approx(10)
    assert hours["finished"] == pytest.approx(30)
    assert sum(hours.values()) == pytest.approx(100)


@pytest.fixture
def history(lab, people):
    """Six guides and three models released; one guide still waiting for the slicer."""
    uid = people["manager"].user_id
    guides = [40.0, 48.0, 52.0, 60.0, 75.0, 110.0]
    models = [20.0, 26.0, 90.0]
    for h in guides:
        past_device(lab, uid, device_type="surgical_guide", lead_h=h, printer="bench-offline")
    for h in models:
        past_device(
            lab,
            uid,
            device_type="anatomical_model",
            lead_h=h,
            printer="bench-offline",
            estimate_h=h * 0.15,
        )
    return {"guides": guides, "models": models}


def test_order_forecast_from_a_known_history_gives_the_known_quantiles(lab, history):
    with read_session(lab.engine) as s:
        guide = order_forecast(s, "surgical_guide", lab)
        model = order_forecast(s, "anatomical_model", lab)
    g = guide["forecast"]
    assert g.basis == "same_kind" and g.cases == 6
    assert g.median_h == pytest.approx(float(np.percentile(history["guides"], 50)), abs=1e-3)
    assert g.p90_h == pytest.approx(float(np.percentile(history["guides"], 90)), abs=1e-3)
    gap = guide["ready_p90"] - guide["ready_median"]
    assert gap.total_seconds() / 3600 == pytest.approx(g.p90_h - g.median_h, abs=1e-3)
    m = model["forecast"]  # three models are too few: every kind counts
    every = history["guides"] + history["models"]
    assert m.basis == "all_kinds" and m.cases == 9
    assert m.median_h == pytest.approx(float(np.percentile(every, 50)), abs=1e-3)


def test_step_durations_per_printer_and_the_print_ratio(lab, history):
    with read_session(lab.engine) as s:
        rows = released_devices(s)
        table = step_durations(rows, by=("device_type", "printer", "material"))
        ratios = print_ratios(rows)
    assert len(rows) == 9
    prints = {r["device_type"]: r for r in table if r["step"] == "finished"}
    guide_print = [h * (SHARES["finished"] - SHARES["started"]) for h in history["guides"]]
    assert prints["surgical_guide"]["printer"] == "bench-offline"
    assert prints["surgical_guide"]["cases"] == 6
    assert prints["surgical_guide"]["median_h"] == pytest.approx(
        float(np.median(guide_print)), abs=1e-3
    )
    # Guides printed for 0.3 of their lead time against an estimate of 0.3: ratio 1; models
    # against 0.15: ratio 2. The median over the printer's nine prints is 1.
    assert ratios[("bench-offline", "PLA")] == pytest.approx(1.0, abs=1e-3)


def test_empty_history_gives_the_configured_default(lab):
    with read_session(lab.engine) as s:
        result = order_forecast(s, "surgical_guide", lab)
    assert result["forecast"].basis == "default"
    assert result["forecast"].median_h == pytest.approx(72.0)


def test_case_in_progress_is_forecast_from_the_step_it_reached(lab, people, history):
    uid = people["manager"].user_id
    ordered = utcnow() - timedelta(hours=20)
    ongoing = past_device(
        lab,
        uid,
        device_type="surgical_guide",
        lead_h=100,
        ordered_at=ordered,
        stop_after="approved",
    )
    with read_session(lab.engine) as s:
        case = s.get(Case, ongoing["case_id"])
        result = case_forecast(s, case, lab)
    assert result["since"] == "approved"
    approved_at = ordered + timedelta(hours=100 * SHARES["approved"])
    remaining = [h * (1 - SHARES["approved"]) for h in history["guides"]]
    expected = approved_at + timedelta(hours=float(np.percentile(remaining, 50)))
    assert abs((result["ready_median"] - expected).total_seconds()) < 5
