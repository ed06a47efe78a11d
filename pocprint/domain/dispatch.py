"""Which printer may take which job, and in which order jobs go out.

Order: urgent jobs first (an explicit override, recorded with its reason), then earliest
needed-by date first (earliest deadline first), then the oldest job.
A printer takes a job only if it is enabled, idle and reachable, its plate was confirmed
clear since its last job, its calibration is not overdue, nothing in the material or
maintenance records objects, and one of the job's slices is validated on it for the job's
device type, with the material it has loaded, and fits its build volume; and a slice is
only ever in the material the order names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from pocprint.domain.combinations import same_material
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
    reachable: bool = True
    material: str | None = None
    # device type -> {profile: material} validated on this printer (None: only `profiles`)
    validated: Mapping[str, Mapping[str, str]] | None = None
    blocks: tuple[str, ...] = ()  # objections from material and maintenance records


@dataclass(frozen=True)
class SliceOption:
    profile_id: str
    material: str | None
    extents: tuple[float, float, float]


@dataclass(frozen=True)
class JobView:
    id: int
    profile_id: str
    needed_by: date
    created_at: datetime
    extents: tuple[float, float, float]
    device_type: str | None = None
    slices: tuple[SliceOption, ...] = ()
    urgent: bool = False
    estimated_time_s: int | None = None
    retry_at: datetime | None = None  # a failed send waits out its back-off until then
    material: str | None = None  # the material the order names (None: not named, any)

    def options(self) -> tuple[SliceOption, ...]:
        return self.slices or (SliceOption(self.profile_id, None, self.extents),)


@dataclass(frozen=True)
class Assignment:
    job: JobView
    printer: PrinterView
    slice: SliceOption


def queue_key(job: JobView) -> tuple:
    return (not job.urgent, job.needed_by, job.created_at, job.id)


def queue_order(jobs: Iterable[JobView]) -> list[JobView]:
    return sorted(jobs, key=queue_key)


def _printer_refusals(printer: PrinterView, today: date) -> list[str]:
    reasons = []
    if not printer.enabled:
        reasons.append("printer is disabled")
    if not printer.reachable:
        reasons.append("printer does not answer")
    if not printer.idle:
        reasons.append("printer is not idle")
    if not printer.plate_clear:
        reasons.append("plate not confirmed clear since the last job")
    if printer.calibration_due is not None and printer.calibration_due < today:
        reasons.append(f"calibration was due on {printer.calibration_due.isoformat()}")
    reasons.extend(printer.blocks)
    return reasons


def slice_refusals(printer: PrinterView, job: JobView, option: SliceOption) -> list[str]:
    """Why this printer may not print this slice of the job (empty: it may)."""
    what = (job.device_type or "this device type").replace("_", " ")
    if printer.validated is None:
        if option.profile_id not in printer.profiles:
            return [f"profile {option.profile_id} is not validated on this printer"]
    else:
        allowed = printer.validated.get(job.device_type or "", {})
        if option.profile_id not in allowed:
            return [f"profile {option.profile_id} is not validated on this printer for {what}s"]
    reasons = []
    if job.material and option.material and not same_material(option.material, job.material):
        return [
            f"the order names {job.material}; the {option.profile_id} slice is {option.material}"
        ]
    if option.material is not None and not same_material(option.material, printer.material):
        reasons.append(
            f"printer is loaded with {printer.material or 'no material'}, "
            f"the {option.profile_id} slice needs {option.material}"
        )
    reasons.extend(fit_problems(option.extents, printer.volume))
    return reasons


def choose_slice(printer: PrinterView, job: JobView) -> SliceOption | None:
    """The first of the job's slices this printer may print, or None."""
    for option in job.options():
        if not slice_refusals(printer, job, option):
            return option
    return None


def refusals(printer: PrinterView, job: JobView, today: date) -> list[str]:
    """Every reason this printer may not take this job now (empty list: it may)."""
    reasons = _printer_refusals(printer, today)
    if choose_slice(printer, job) is None:
        for option in job.options():
            reasons.extend(slice_refusals(printer, job, option))
    return reasons


def plan(printers: Sequence[PrinterView], jobs: Sequence[JobView], today: date) -> list[Assignment]:
    """Pair waiting jobs with free printers: most urgent job first, each printer once."""
    free = [p for p in printers if not _printer_refusals(p, today)]
    out = []
    for job in queue_order(jobs):
        for printer in free:
            option = choose_slice(printer, job)
            if option is not None:
                out.append(Assignment(job, printer, option))
                free.remove(printer)
                break
    return out


def assign(
    printers: Sequence[PrinterView], jobs: Sequence[JobView], today: date
) -> list[tuple[JobView, PrinterView]]:
    return [(a.job, a.printer) for a in plan(printers, jobs, today)]


@dataclass
class _Lane:
    printer: PrinterView
    free_at: datetime
    jobs: list[int] = field(default_factory=list)


def predict_finish(
    printers: Sequence[PrinterView],
    busy_until: Mapping[int, datetime],
    jobs: Sequence[JobView],
    now: datetime,
) -> dict[int, datetime | None]:
    """Predicted finish per waiting job: jobs in queue order each take the printer (that
    could print one of their slices, ignoring plate and idle state) that frees up first.
    ``busy_until`` holds when each busy printer's current print should end. A job no printer
    can take, or without a time estimate, gets None."""
    lanes = [
        _Lane(p, max(now, busy_until.get(p.id, now)))
        for p in printers
        if p.enabled and (p.calibration_due is None or p.calibration_due >= now.date())
    ]
    out: dict[int, datetime | None] = {}
    for job in queue_order(jobs):
        able = [lane for lane in lanes if choose_slice(lane.printer, job) is not None]
        if not able or not job.estimated_time_s:
            out[job.id] = None
            continue
        lane = min(able, key=lambda lane: lane.free_at)
        lane.free_at = lane.free_at + timedelta(seconds=job.estimated_time_s)
        lane.jobs.append(job.id)
        out[job.id] = lane.free_at
    return out
