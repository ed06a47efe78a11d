"""Which printer may take which job, and in which order jobs go out.

Order: earliest needed-by date first (earliest deadline first), then the oldest job.
A printer takes a job only if it is idle, its plate was confirmed clear since its last job,
it offers the job's validated slicer profile, and the part fits its build volume.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from pocprint.domain.placement import BuildVolume, fit_problems


@dataclass(frozen=True)
class PrinterView:
    id: int
    name: str
    idle: bool
    plate_clear: bool
    profiles: frozenset[str]
    volume: BuildVolume
    enabled: bool = True
    calibration_due: date | None = None


@dataclass(frozen=True)
class JobView:
    id: int
    profile_id: str
    needed_by: date
    created_at: datetime
    extents: tuple[float, float, float]


def queue_order(jobs: Iterable[JobView]) -> list[JobView]:
    return sorted(jobs, key=lambda j: (j.needed_by, j.created_at, j.id))


def refusals(printer: PrinterView, job: JobView, today: date) -> list[str]:
    """Every reason this printer may not take this job now (empty list: it may)."""
    reasons = []
    if not printer.enabled:
        reasons.append("printer is disabled")
    if not printer.idle:
        reasons.append("printer is not idle")
    if not printer.plate_clear:
        reasons.append("plate not confirmed clear since the last job")
    if printer.calibration_due is not None and printer.calibration_due < today:
        reasons.append(f"calibration was due on {printer.calibration_due.isoformat()}")
    if job.profile_id not in printer.profiles:
        reasons.append(f"profile {job.profile_id} is not validated on this printer")
    reasons.extend(fit_problems(job.extents, printer.volume))
    return reasons


def assign(
    printers: Sequence[PrinterView], jobs: Sequence[JobView], today: date
) -> list[tuple[JobView, PrinterView]]:
    """Pair waiting jobs with free printers: most urgent job first, each printer once."""
    free = list(printers)
    pairs = []
    for job in queue_order(jobs):
        for printer in free:
            if not refusals(printer, job, today):
                pairs.append((job, printer))
                free.remove(printer)
                break
    return pairs
