"""Planning back-test: how good is the lead-time forecast on a realistic history?

A generator (below, seeded) makes a year of a lab's cases from stated distributions; then
each case ordered after a warm-up is predicted with only the cases released before its order
time, by the same code the order form and the case page use (`reads.history.forecast_from`,
quantiles from `domain.lead_time`). Reported: the median absolute error of the predicted
ready time (median forecast vs the real release), and the coverage of the 90 % bound (share
of cases released by the predicted 90th percentile; target 85-95 %), at the order and again
once the design is approved (the case page's view as a case progresses).

Stated distributions (hours; log-normal given by its median and the sigma of its log):

| step | anatomical model | surgical guide |
|---|---|---|
| review wait | 6, 0.8 | 8, 0.8 |
| mesh repair | 1, 0.6 | 1.5, 0.6 |
| approval wait | 10, 0.9 | 20, 0.9 |
| slicing | 0.2, 0.4 | 0.2, 0.4 |
| queue wait | 8 x load, 0.7 | 8 x load, 0.7 |
| print | estimate x printer ratio | estimate x printer ratio |
| post-processing, QA, release | 12, 0.7 | 30, 0.6 |

Orders arrive as a Poisson process (3.0 a day on weekdays, 0.5 at weekends), 60 % models and
40 % guides. Slicer estimates are log-normal (models 9 h, 0.5; guides 3 h, 0.4); each of three
printers prints at its own ratio to the estimate (1.00, 1.08, 1.20) with 5 % noise. Load is
a seasonal factor 0.6-1.6 over the year (busier in spring), so history lags the present -
the forecast has to cope with that, as it must in a real lab.

Writes bench/results/planning.json. `python -m bench.planning [SEED]`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from pocprint.config import REPO_ROOT
from pocprint.domain.lead_time import MILESTONES, quantile
from pocprint.reads.history import DeviceHistory, forecast_from

DAYS = 365
WARM_UP_DAYS = 60
START = datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
STEPS = {  # hours: (median, sigma) per device type
    "anatomical_model": {
        "reviewed": (6.0, 0.8),
        "repaired": (1.0, 0.6),
        "approved": (10.0, 0.9),
        "sliced": (0.2, 0.4),
        "queue": (8.0, 0.7),
        "released": (12.0, 0.7),
    },
    "surgical_guide": {
        "reviewed": (8.0, 0.8),
        "repaired": (1.5, 0.6),
        "approved": (20.0, 0.9),
        "sliced": (0.2, 0.4),
        "queue": (8.0, 0.7),
        "released": (30.0, 0.6),
    },
}
ESTIMATE_H = {"anatomical_model": (9.0, 0.5), "surgical_guide": (3.0, 0.4)}
PRINTERS = {"printer-a": 1.00, "printer-b": 1.08, "printer-c": 1.20}
SHARE_GUIDES = 0.4
RATE_WEEKDAY, RATE_WEEKEND = 3.0, 0.5


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _load(day: float) -> float:
    """Seasonal load factor: 0.6 to 1.6, peaking in spring."""
    return 1.1 + 0.5 * math.sin(2 * math.pi * (day - 30) / DAYS)


def generate(seed: int = 12) -> list[DeviceHistory]:
    """A year of cases with every milestone, ordered by order time."""
    rng = random.Random(seed)
    out = []
    day = 0.0
    n = 0
    while day < DAYS:
        weekday = (START + timedelta(days=day)).weekday() < 5
        day += rng.expovariate(RATE_WEEKDAY if weekday else RATE_WEEKEND)
        if day >= DAYS:
            break
        n += 1
        kind = "surgical_guide" if rng.random() < SHARE_GUIDES else "anatomical_model"
        steps = STEPS[kind]
        printer = rng.choice(sorted(PRINTERS))
        estimate = _lognormal(rng, *ESTIMATE_H[kind])
        at = START + timedelta(days=day)
        stones = {"ordered": at}
        for name in ("reviewed", "repaired", "approved", "sliced"):
            at = at + timedelta(hours=_lognormal(rng, *steps[name]))
            stones[name] = at
        queue_median, queue_sigma = steps["queue"]
        at = at + timedelta(hours=_lognormal(rng, queue_median * _load(day), queue_sigma))
        stones["started"] = at
        printed = estimate * PRINTERS[printer] * (1 + rng.gauss(0.0, 0.05))
        at = at + timedelta(hours=max(0.1, printed))
        stones["finished"] = at
        at = at + timedelta(hours=_lognormal(rng, *steps["released"]))
        stones["released"] = at
        out.append(
            DeviceHistory(
                serial=f"SYN-{n:05d}",
                case_id=n,
                device_type=kind,
                printer=printer,
                material="PLA",
                needed_by=(stones["ordered"] + timedelta(days=7)).date(),
                estimated_print_h=estimate,
                milestones=stones,
            )
        )
    return out


def backtest(history: list[DeviceHistory], since: str) -> dict:
    """Predict each case after the warm-up from the cases released before it reached `since`."""
    cut = START + timedelta(days=WARM_UP_DAYS)
    by_release = sorted(history, key=lambda h: h.milestones["released"])
    errors, covered, inside, bases = [], 0, 0, {}
    cases = [h for h in history if h.milestones["ordered"] >= cut]
    started = time.perf_counter()
    for case in cases:
        at = case.milestones[since]
        known = [h for h in by_release if h.milestones["released"] <= at]
        result = forecast_from(known, case.device_type, since)
        actual = (case.milestones["released"] - at).total_seconds() / 3600
        errors.append(abs(actual - result.median_h))
        covered += actual <= result.p90_h
        inside += actual <= result.median_h
        bases[result.basis] = bases.get(result.basis, 0) + 1
    seconds = time.perf_counter() - started
    actuals = [
        (c.milestones["released"] - c.milestones[since]).total_seconds() / 3600 for c in cases
    ]
    return {
        "from_milestone": since,
        "cases_predicted": len(cases),
        "median_absolute_error_h": round(statistics.median(errors), 2),
        "mean_absolute_error_h": round(statistics.fmean(errors), 2),
        "coverage_of_90_percent_bound": round(covered / len(cases), 4),
        "share_ready_by_median": round(inside / len(cases), 4),
        "actual_median_h": round(quantile(actuals, 0.5), 2),
        "actual_p90_h": round(quantile(actuals, 0.9), 2),
        "basis_counts": bases,
        "seconds": round(seconds, 2),
    }


def main() -> int:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    history = generate(seed)
    results = {m: backtest(history, m) for m in ("ordered", "approved", "finished")}
    kinds = {k: sum(h.device_type == k for h in history) for k in STEPS}
    result = {
        "benchmark": "planning",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "generator": {
            "seed": seed,
            "days": DAYS,
            "warm_up_days": WARM_UP_DAYS,
            "cases": len(history),
            "by_device_type": kinds,
            "first_order": START.date().isoformat(),
            "milestones": list(MILESTONES),
        },
        "target_coverage": [0.85, 0.95],
        "backtest": results,
        "coverage_in_target": {
            m: 0.85 <= r["coverage_of_90_percent_bound"] <= 0.95 for m, r in results.items()
        },
    }
    print(json.dumps(result, indent=2))
    out = REPO_ROOT / "bench" / "results" / "planning.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
