"""When will a case be ready: quantiles of the lab's own past lead times.

The model is deliberately plain so that a clinician can be told why: the predicted ready time
is the median of how long past cases of the same kind took from the same point of the
workflow, and the upper bound is their 90th percentile. With fewer than `min_cases` cases of
the same kind, all kinds are used; with fewer than that overall, the site's configured
defaults. Pure: the samples come from reads/history.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# The milestones of a case, in workflow order; the step between two is named by the later.
MILESTONES = (
    "ordered",
    "reviewed",
    "repaired",
    "approved",
    "sliced",
    "started",
    "finished",
    "released",
)
STEP_NAMES = {
    "reviewed": "review wait",
    "repaired": "mesh repair",
    "approved": "approval wait",
    "sliced": "slicing",
    "started": "queue wait",
    "finished": "print",
    "released": "post-processing, QA and release",
}
# Hours from a milestone to the release when the lab has no history yet (config [planning]
# default_median_h / default_p90_h scale them: these are the shares of the whole lead time).
DEFAULT_MEDIAN_H = 72.0
DEFAULT_P90_H = 120.0
_REMAINING_SHARE = {
    "ordered": 1.0,
    "reviewed": 0.8,
    "repaired": 0.7,
    "approved": 0.55,
    "sliced": 0.5,
    "started": 0.35,
    "finished": 0.2,
    "released": 0.0,
}
MIN_CASES = 5


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between order statistics (numpy's default,
    Hyndman and Fan type 7). Raises ValueError on an empty list or q outside [0, 1]."""
    if not values:
        raise ValueError("no values to take a quantile of")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be within 0 and 1, not {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Forecast:
    """Hours from a milestone to the release: median and 90th percentile, and their basis."""

    median_h: float
    p90_h: float
    basis: str  # "same_kind" | "all_kinds" | "default"
    cases: int  # how many past cases the quantiles come from (0 for the default)
    kind: str  # the kind asked about, e.g. "surgical_guide"
    since: str  # the milestone the hours count from

    @property
    def explanation(self) -> str:
        if self.basis == "same_kind":
            return (
                f"median and 90th percentile of {self.cases} past {self.kind.replace('_', ' ')} "
                f"cases, from {self.since} to release"
            )
        if self.basis == "all_kinds":
            return (
                f"too few past {self.kind.replace('_', ' ')} cases: median and 90th percentile "
                f"of {self.cases} past cases of all kinds, from {self.since} to release"
            )
        return "too little history: the lab's configured default lead time"

    def ready(self, start: datetime, now: datetime | None = None) -> tuple[datetime, datetime]:
        """Median and 90 % ready times counted from `start`, never before `now`."""
        median = start + timedelta(hours=self.median_h)
        p90 = start + timedelta(hours=self.p90_h)
        if now is not None:
            median, p90 = max(median, now), max(p90, now)
        return median, p90


def forecast(
    kind: str,
    same_kind: Sequence[float],
    all_kinds: Sequence[float],
    *,
    since: str = "ordered",
    min_cases: int = MIN_CASES,
    default_median_h: float = DEFAULT_MEDIAN_H,
    default_p90_h: float = DEFAULT_P90_H,
) -> Forecast:
    """Predict the hours from `since` to release from past cases' hours over the same span."""
    if since not in _REMAINING_SHARE:
        raise ValueError(f"unknown milestone {since!r}")
    for basis, samples in (("same_kind", same_kind), ("all_kinds", all_kinds)):
        if len(samples) >= min_cases:
            return Forecast(
                quantile(samples, 0.5), quantile(samples, 0.9), basis, len(samples), kind, since
            )
    share = _REMAINING_SHARE[since]
    return Forecast(default_median_h * share, default_p90_h * share, "default", 0, kind, since)


def reached(milestones: dict[str, datetime | None]) -> str:
    """The last milestone a case has reached in workflow order (every earlier one present)."""
    last = "ordered"
    for name in MILESTONES:
        if milestones.get(name) is None:
            break
        last = name
    return last


def step_hours(milestones: dict[str, datetime | None]) -> dict[str, float]:
    """Hours each step took, keyed by the milestone that ends it; a step whose ends are not
    both known is left out, and a negative span (clock skew, an edit) counts as zero."""
    out: dict[str, float] = {}
    for before, after in zip(MILESTONES, MILESTONES[1:], strict=False):
        a, b = milestones.get(before), milestones.get(after)
        if a is not None and b is not None:
            out[after] = max(0.0, (b - a).total_seconds() / 3600.0)
    return out


def hours_to_release(milestones: dict[str, datetime | None], since: str) -> float | None:
    """Hours from `since` to the release of a released case (None if either is unknown)."""
    start, end = milestones.get(since), milestones.get("released")
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() / 3600.0)
