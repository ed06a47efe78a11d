"""Plate-clear confirmation and dispatch planning: which ready job goes to which printer.

In one transaction the printer is claimed by a conditional update (enabled, idle, plate
confirmed clear, no job on it; a database rule allows one active job per printer) and the
job moves ready -> dispatching under a planning lease, so neither can be used twice. Sending
is its own step, `services.sending.send_job`, run in this process (embedded engine) or by
whichever worker takes the message (Celery).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import select

from pocprint.connectors.base import PrinterState
from pocprint.domain.combinations import validated_profiles
from pocprint.domain.dispatch import JobView, PrinterView, SliceOption, plan
from pocprint.domain.placement import BuildVolume
from pocprint.domain.roles import Permission
from pocprint.domain.states import ON_PRINTER, JobState
from pocprint.domain.steps import Step
from pocprint.faults import kill_point
from pocprint.services import audit, leases
from pocprint.services.actors import SYSTEM, Actor
from pocprint.services.errors import NotApproved, NotFound, PrinterProblem
from pocprint.services.gate import require_clinical_clearance
from pocprint.services.lab import Lab
from pocprint.services.materials import dispatch_blocks
from pocprint.services.sending import send_job
from pocprint.services.slicing import slice_fields
from pocprint.services.transitions import StaleState, move, update_if
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Case, JobSlice, Printer, utcnow

log = logging.getLogger(__name__)


def confirm_plate_clear(lab: Lab, actor: Actor, printer_id: int) -> None:
    actor.require(Permission.OPERATE_PRINTERS)
    with unit_of_work(lab.engine) as session:
        printer = session.get(Printer, printer_id)
        if printer is None:
            raise NotFound(f"no printer {printer_id}")
        busy = session.exec(
            select(BuildJob).where(
                BuildJob.printer_id == printer_id, BuildJob.state.in_(list(ON_PRINTER))
            )
        ).first()
        if busy is not None:
            raise PrinterProblem(
                f"{printer.name} still holds job {busy.serial} ({busy.state}); "
                "finish or resolve it first"
            )
        if printer.state != PrinterState.IDLE or not update_if(
            session,
            printer,
            state=PrinterState.IDLE,
            plate_clear=True,
            plate_clear_by=actor.user_id,
            plate_clear_at=utcnow(),
            updated_at=utcnow(),
        ):
            raise PrinterProblem(f"{printer.name} is {printer.state}, not idle")
        audit.record(
            session,
            actor,
            "printer.plate_clear",
            "printer",
            printer.name,
            before={"plate_clear": False},
            after={"plate_clear": True},
        )
        kill_point("plate_clear.before_commit")
    lab.due(Step.DISPATCH)


def dispatch_ready_jobs(lab: Lab) -> int:
    """The embedded engine's dispatch: plan, then send each claimed job in this process;
    returns how many were started. Each send stands alone: one failing never holds up the
    rest of the batch."""
    started = 0
    for job_id in plan_dispatch(lab):
        try:
            started += bool(send_job(lab, job_id))
        except Exception:  # the database went away mid-send: the lease runs out, the sweeper
            log.exception("job %s: sending failed", job_id)  # follows it
    return started


def plan_dispatch(lab: Lab) -> list[int]:
    """Pair ready jobs with free printers and claim each pair; returns the jobs whose send
    is now due (`send_job`). A job for a manual printer waits for the technician instead."""
    claimed = _claim_pairs(lab)
    if claimed:
        kill_point("dispatch.claimed")
    return [job_id for job_id, _printer, lease in claimed if lease is not None]


def printer_views(lab: Lab, session, printers: list[Printer], now) -> list[PrinterView]:
    """Dispatch's view of printers: state, validated profiles per device type, loaded
    material, and any objection from the material and maintenance records."""
    device_types = {t for c in lab.combinations for t in c.device_types}
    views = []
    for p in printers:
        definition = lab.printers.get(p.name)
        if definition is None:
            continue
        offered = frozenset(p.profiles or [])
        validated = {
            device_type: validated_profiles(lab.combinations, p.name, p.model, offered, device_type)
            for device_type in device_types
        }
        views.append(
            PrinterView(
                id=p.id,
                name=p.name,
                idle=p.state == PrinterState.IDLE,
                plate_clear=p.plate_clear,
                profiles=offered,
                volume=BuildVolume(p.build_x, p.build_y, p.build_z),
                enabled=p.enabled,
                calibration_due=p.calibration_due,
                reachable=definition.manual or p.failed_polls == 0,
                material=p.material,
                validated=validated,
                blocks=tuple(dispatch_blocks(session, p.id, p.material, now)),
            )
        )
    return views


def job_views(session, states: tuple[str, ...] = (JobState.READY,)) -> list[JobView]:
    """Waiting jobs with their slices, needed-by date, device type and urgency."""
    rows = session.exec(
        select(BuildJob, Case.needed_by, Case.device_type, Case.material)
        .join(Case, Case.id == BuildJob.case_id)
        .where(BuildJob.state.in_(list(states)))
    ).all()
    if not rows:
        return []
    slices: dict[int, list[JobSlice]] = {}
    for s in session.exec(
        select(JobSlice)
        .where(JobSlice.job_id.in_([j.id for j, *_rest in rows]))
        .order_by(JobSlice.id)
    ).all():
        slices.setdefault(s.job_id, []).append(s)
    return [
        JobView(
            id=j.id,
            profile_id=j.profile_id,
            needed_by=needed_by,
            created_at=j.created_at,
            extents=tuple(j.extents or (0, 0, 0)),
            device_type=device_type,
            slices=tuple(
                SliceOption(
                    s.profile_id,
                    s.material,
                    tuple((s.placement or {}).get("extents_mm") or j.extents or (0, 0, 0)),
                )
                for s in slices.get(j.id, [])
            ),
            urgent=j.urgent,
            estimated_time_s=j.estimated_time_s,
            retry_at=j.retry_at,
            material=material,
        )
        for j, needed_by, device_type, material in rows
    ]


def _cleared(session, job_id: int) -> bool:
    try:
        require_clinical_clearance(session, session.get(BuildJob, job_id))
    except NotApproved:
        return False
    return True


def _take_printer(session, printer_id: int) -> bool:
    """Claim a printer by consuming its plate-clear, only if it is still enabled, idle, its
    plate confirmed clear, and no job occupies it."""
    occupied = (
        select(BuildJob.id)
        .where(BuildJob.printer_id == Printer.id, BuildJob.state.in_(list(ON_PRINTER)))
        .exists()
    )
    result = session.execute(
        update(Printer)
        .where(
            Printer.id == printer_id,
            Printer.enabled,
            Printer.plate_clear,
            Printer.state == PrinterState.IDLE,
            ~occupied,
        )
        .values(plate_clear=False, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount == 1


def _claim_pairs(lab: Lab) -> list[tuple[int, str, str | None]]:
    """Claim (job, printer) pairs; returns (job id, printer name, lease or None if manual)."""
    now = utcnow()
    with unit_of_work(lab.engine) as session:
        printers = session.exec(
            select(Printer).where(
                Printer.enabled, Printer.plate_clear, Printer.state == PrinterState.IDLE
            )
        ).all()
        if not printers:
            return []
        # Jobs the clinical gate refuses are left out before planning, so they hold no printer
        # (the gate audits each change of its decision, not every pass); so are jobs waiting
        # out a back-off after a failed send.
        jobs = [
            j
            for j in job_views(session)
            if (j.retry_at is None or j.retry_at <= now) and _cleared(session, j.id)
        ]
        if not jobs:
            return []
        views = printer_views(lab, session, printers, now)
        claimed = []
        for chosen in plan(views, jobs, now.date()):
            printer = session.get(Printer, chosen.printer.id)
            if not _take_printer(session, printer.id):
                continue  # changed since it was read: someone else's print, disabled...
            job = session.get(BuildJob, chosen.job.id)
            manual = lab.printers[printer.name].manual
            lease = None if manual else leases.plan_token()
            sliced = session.exec(
                select(JobSlice).where(
                    JobSlice.job_id == job.id, JobSlice.profile_id == chosen.slice.profile_id
                )
            ).first()
            # The G-code sent is the slice made for this printer.
            fields = slice_fields(sliced, job.extents) if sliced is not None else {}
            remote = f"{job.serial}.gcode"
            try:
                move(
                    session,
                    job,
                    JobState.DISPATCHING,
                    actor=SYSTEM,
                    action="job.dispatching",
                    expected=JobState.READY,
                    after={
                        "printer": printer.name,
                        "printer_serial": printer.serial,
                        "plate_clear_by": printer.plate_clear_by,
                        "plate_clear_at": printer.plate_clear_at,
                        "remote_name": remote,
                        "profile": fields.get("profile_id", job.profile_id),
                        "material": fields.get("material", job.material),
                        "gcode_sha256": fields.get("gcode_sha256", job.gcode_sha256),
                        "urgent": job.urgent,
                        "manual": manual,
                        "lease": lease,
                    },
                    printer_id=printer.id,
                    remote_name=remote,
                    dispatched_at=utcnow(),
                    dispatched_by_plate_clear=printer.plate_clear_by,
                    dispatch_attempts=job.dispatch_attempts + 1,
                    lease_owner=lease,
                    lease_expires_at=(
                        utcnow() + timedelta(seconds=lab.settings.lease_s) if lease else None
                    ),
                    **fields,
                )
            except StaleState:
                # The job moved on (cancelled, re-sliced) since it was read: the printer's
                # plate is still clear, and this transaction holds the printer row.
                session.execute(
                    update(Printer).where(Printer.id == printer.id).values(plate_clear=True)
                )
                continue
            claimed.append((job.id, printer.name, lease))
        return claimed
