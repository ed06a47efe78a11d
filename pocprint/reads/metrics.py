"""Lab metrics over a date range: turnaround per device type, on-time share, printer
utilisation, failures and reprints per printer, material used per lot, time spent per step.

Each metric is a list of rows (the CSV behind its chart) plus which column is charted, so the
chart and the CSV are always the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session, select

from pocprint.domain.lead_time import STEP_NAMES, quantile
from pocprint.domain.times import as_datetime
from pocprint.reads.auditor import lots_at_build
from pocprint.reads.history import released_devices
from pocprint.store.models import BuildJob, Printer, QaDisposition


@dataclass(frozen=True)
class Metric:
    name: str
    title: str
    label: str  # the column naming each bar
    value: str  # the column charted
    unit: str
    rows: list[dict]


METRICS = (
    "turnaround",
    "on_time",
    "utilisation",
    "failures",
    "material",
    "step_time",
)


def bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    return (
        datetime.combine(date_from, time.min, tzinfo=UTC),
        datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC),
    )


def _round(value: float) -> float:
    return round(value, 2)


def turnaround(history) -> Metric:
    kinds: dict[str, list[float]] = {}
    for h in history:
        lead = (h.milestones["released"] - h.milestones["ordered"]).total_seconds() / 3600
        kinds.setdefault(h.device_type, []).append(lead)
    rows = [
        {
            "device_type": k,
            "devices": len(v),
            "median_hours": _round(quantile(v, 0.5)),
            "p90_hours": _round(quantile(v, 0.9)),
        }
        for k, v in sorted(kinds.items())
    ]
    return Metric(
        "turnaround",
        "Turnaround, order to release (median)",
        "device_type",
        "median_hours",
        "h",
        rows,
    )


def on_time(history) -> Metric:
    kinds: dict[str, list[bool]] = {}
    for h in history:
        deadline = datetime.combine(h.needed_by, time.min, tzinfo=UTC)
        kinds.setdefault(h.device_type, []).append(h.milestones["released"] <= deadline)
    rows = [
        {
            "device_type": k,
            "devices": len(v),
            "on_time": sum(v),
            "on_time_percent": _round(100.0 * sum(v) / len(v)),
        }
        for k, v in sorted(kinds.items())
    ]
    return Metric(
        "on_time",
        "Released before the needed-by date",
        "device_type",
        "on_time_percent",
        "%",
        rows,
    )


def _jobs_in(session: Session, start: datetime, end: datetime) -> list[BuildJob]:
    """Builds that printed within the range (started before its end, finished after its
    start, or still printing)."""
    jobs = session.exec(
        select(BuildJob).where(BuildJob.printer_id.is_not(None), BuildJob.started_at.is_not(None))
    ).all()
    out = []
    for j in jobs:
        began, ended = as_datetime(j.started_at), as_datetime(j.finished_at)
        if began < end and (ended is None or ended > start):
            out.append(j)
    return out


def utilisation(session: Session, printers: dict[int, str], start, end, now) -> Metric:
    hours = {pid: 0.0 for pid in printers}
    for j in _jobs_in(session, start, end):
        began = max(as_datetime(j.started_at), start)
        ended = min(as_datetime(j.finished_at) or now, end)
        if ended > began and j.printer_id in hours:
            hours[j.printer_id] += (ended - began).total_seconds() / 3600
    span = (min(end, max(now, start)) - start).total_seconds() / 3600 or 1.0
    rows = [
        {
            "printer": printers[pid],
            "printing_hours": _round(h),
            "range_hours": _round(span),
            "utilisation_percent": _round(100.0 * h / span),
        }
        for pid, h in hours.items()
    ]
    return Metric("utilisation", "Printer utilisation", "printer", "utilisation_percent", "%", rows)


def failures(session: Session, printers: dict[int, str], start, end) -> Metric:
    jobs = [
        j
        for j in session.exec(select(BuildJob).where(BuildJob.outcome.is_not(None))).all()
        if j.printer_id in printers and start <= as_datetime(j.outcome_at or j.updated_at) < end
    ]
    reprinted = set(
        session.exec(
            select(QaDisposition.build_job_id).where(QaDisposition.decision == "reprint")
        ).all()
    )
    rows = []
    for pid, name in printers.items():
        mine = [j for j in jobs if j.printer_id == pid]
        failed = [j for j in mine if j.outcome == "rejected"]
        again = [j for j in mine if j.id in reprinted]
        rows.append(
            {
                "printer": name,
                "builds": len(mine),
                "rejected": len(failed),
                "reprinted": len(again),
                "failure_percent": _round(100.0 * len(failed) / len(mine)) if mine else 0.0,
            }
        )
    return Metric(
        "failures", "Rejected builds per printer", "printer", "failure_percent", "%", rows
    )


def material(session: Session, start, end) -> Metric:
    jobs = _jobs_in(session, start, end)
    lots = lots_at_build(session, jobs)
    grams: dict[str, float] = {}
    for j in jobs:
        lot = lots.get(j.id)
        key = f"{lot.material} {lot.lot_number}" if lot else "no lot recorded"
        grams[key] = grams.get(key, 0.0) + (j.filament_g or 0.0)
    rows = [{"lot": k, "grams": _round(v)} for k, v in sorted(grams.items())]
    return Metric("material", "Material used per lot", "lot", "grams", "g", rows)


def step_time(history) -> Metric:
    steps: dict[str, list[float]] = {}
    for h in history:
        for step, hours in h.steps.items():
            steps.setdefault(step, []).append(hours)
    rows = [
        {
            "step": STEP_NAMES[s],
            "devices": len(steps[s]),
            "total_hours": _round(sum(steps[s])),
            "median_hours": _round(quantile(steps[s], 0.5)),
        }
        for s in STEP_NAMES
        if s in steps
    ]
    return Metric(
        "step_time", "Time spent per step (all devices)", "step", "total_hours", "h", rows
    )


def lab_metrics(
    session: Session, date_from: date, date_to: date, now: datetime
) -> dict[str, Metric]:
    """Every metric for devices released (or builds printed) within [date_from, date_to]."""
    if date_to < date_from:
        raise ValueError("the range ends before it begins")
    start, end = bounds(date_from, date_to)
    history = released_devices(session, start, end)
    printers = {p.id: p.name for p in session.exec(select(Printer).order_by(Printer.id)).all()}
    return {
        "turnaround": turnaround(history),
        "on_time": on_time(history),
        "utilisation": utilisation(session, printers, start, end, now),
        "failures": failures(session, printers, start, end),
        "material": material(session, start, end),
        "step_time": step_time(history),
    }
