"""The fleet board: printers and the queue, with predicted finish times."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from pocprint.domain.combinations import same_material
from pocprint.domain.dispatch import predict_finish, queue_order
from pocprint.domain.states import AWAITING_OUTCOME, ON_PRINTER, JobState
from pocprint.reads.holds import Holds
from pocprint.store.models import BuildJob, Case, JobSlice, Part, Printer, utcnow

QUEUE_STATES = (JobState.SLICE_QUEUED, JobState.SLICING, JobState.SLICE_FAILED, JobState.READY)


CALIBRATION_WARNING = timedelta(days=7)


def fleet_views(session: Session, lab, rows: list[Printer], now: datetime):
    """Dispatch's own view of printers, so the board shows exactly what dispatch decides."""
    if lab is None:
        return {}
    from pocprint.services.dispatch import printer_views

    return {v.id: v for v in printer_views(lab, session, rows, now)}


def _alerts(p: Printer, job: BuildJob | None, view, waiting_materials: set[str], now) -> list[str]:
    alerts = []
    if p.state == "offline":
        alerts.append(f"Offline: {p.error or 'no answer'}")
    elif p.state == "error":
        alerts.append(f"Printer error: {p.error or p.state_detail}")
    if p.calibration_due and p.calibration_due < now.date():
        alerts.append(f"Calibration overdue since {p.calibration_due.isoformat()}")
    elif p.calibration_due and p.calibration_due <= (now + CALIBRATION_WARNING).date():
        alerts.append(f"Calibration due on {p.calibration_due.isoformat()}")
    if job is not None and job.state == JobState.INTERRUPTED:
        alerts.append(f"Job {job.serial} interrupted: {job.error or 'check the printer'}")
    if view is not None:
        alerts.extend(view.blocks)
    if waiting_materials and not any(same_material(m, p.material) for m in waiting_materials):
        alerts.append(
            f"Material mismatch: loaded {p.material}, waiting jobs need "
            f"{', '.join(sorted(waiting_materials))}"
        )
    return alerts


def _waiting_materials_by_printer(session: Session, views: dict) -> dict[int, set[str]]:
    """For each printer: materials of ready jobs validated on it but needing another material."""
    from pocprint.services.dispatch import job_views

    out: dict[int, set[str]] = {}
    waiting = job_views(session)
    for pid, view in views.items():
        needed: set[str] = set()
        for job in waiting:
            options = [
                o
                for o in job.options()
                if view.validated is not None
                and o.profile_id in view.validated.get(job.device_type or "", {})
            ]
            if options and not any(same_material(o.material, view.material) for o in options):
                needed |= {o.material for o in options if o.material}
        out[pid] = needed
    return out


def printers(session: Session, lab=None, now: datetime | None = None) -> list[dict]:
    now = now or utcnow()
    rows = session.exec(select(Printer).where(Printer.enabled).order_by(Printer.name)).all()
    active = {
        j.printer_id: j
        for j in session.exec(
            select(BuildJob)
            .where(BuildJob.state.in_(list(ON_PRINTER | AWAITING_OUTCOME)))
            .order_by(BuildJob.updated_at)
        ).all()
    }
    views = fleet_views(session, lab, rows, now)
    mismatch = _waiting_materials_by_printer(session, views) if views else {}
    holds = Holds(session, lab, now) if lab is not None else None
    out = []
    for p in rows:
        job = active.get(p.id)
        definition = lab.printers.get(p.name) if lab is not None else None
        manual = bool(definition and definition.manual) or p.connector == "manual"
        on_printer = job is not None and job.state in ON_PRINTER
        printing = on_printer and job.state == JobState.PRINTING
        out.append(
            {
                "id": p.id,
                "name": p.name,
                "serial": p.serial,
                "model": p.model,
                "connector": p.connector,
                "manual": manual,
                "technology": p.technology,
                "build_volume": [p.build_x, p.build_y, p.build_z],
                "min_feature_mm": p.min_feature_mm,
                "material": p.material,
                "state": p.state,
                "detail": p.state_detail,
                "error": p.error,
                "plate_clear": p.plate_clear,
                "plate_clear_at": p.plate_clear_at,
                "progress": p.progress,
                "time_left_s": p.print_time_left_s,
                "eta": now + timedelta(seconds=p.print_time_left_s)
                if p.print_time_left_s and p.state in ("printing", "paused")
                else None,
                "temperatures": p.temperatures or {},
                "last_seen_at": p.last_seen_at,
                "calibration_due": p.calibration_due,
                "alerts": _alerts(p, job, views.get(p.id), mismatch.get(p.id, set()), now),
                "job": (
                    {
                        "id": job.id,
                        "serial": job.serial,
                        "state": job.state,
                        "progress": job.progress,
                        "material": job.material,
                        "profile": job.profile_id,
                        "urgent": job.urgent,
                        "can_pause": printing and p.state == "printing",
                        "can_resume": printing and p.state == "paused",
                        "can_cancel": printing or (manual and job.state == JobState.DISPATCHING),
                        "awaiting_manual_start": manual and job.state == JobState.DISPATCHING,
                        "can_confirm_end": manual and printing,
                        "can_resolve": job.state == JobState.INTERRUPTED,
                    }
                    if job
                    else None
                ),
                "can_clear": p.state == "idle" and not p.plate_clear and not on_printer,
                # With the plate clear: the job that goes next, or why none can.
                "next": holds.for_printer(p.id) if holds and p.plate_clear else None,
            }
        )
    return out


def busy_until(session: Session, rows: list[Printer], now: datetime) -> dict[int, datetime]:
    """When each occupied printer should be free: the printer's own time left, else the
    job's start plus the slicer's estimate (manual printers report no time left)."""
    running = {
        j.printer_id: j
        for j in session.exec(
            select(BuildJob).where(BuildJob.state.in_([JobState.DISPATCHING, JobState.PRINTING]))
        ).all()
    }
    busy = {}
    for p in rows:
        job = running.get(p.id)
        if p.print_time_left_s and p.state in ("printing", "paused", "busy"):
            busy[p.id] = now + timedelta(seconds=p.print_time_left_s)
        elif job is not None:
            start = job.started_at or now
            busy[p.id] = max(now, start + timedelta(seconds=job.estimated_time_s or 0))
    return busy


def queue(session: Session, now: datetime | None = None, lab=None) -> list[dict]:
    """Jobs waiting for slicing or a printer, in dispatch order (urgent first, then earliest
    needed-by date), with a predicted finish over the fleet and an at-risk mark."""
    from pocprint.services.dispatch import job_views

    now = now or utcnow()
    rows = session.exec(
        select(BuildJob, Case, Part)
        .join(Case, Case.id == BuildJob.case_id)
        .join(Part, Part.id == BuildJob.part_id)
        .where(BuildJob.state.in_(list(QUEUE_STATES)))
    ).all()
    by_id = {job.id: (job, case, part) for job, case, part in rows}
    views = job_views(session, tuple(QUEUE_STATES))
    slice_counts: dict[int, list[str]] = {}
    for job_id, profile in session.exec(
        select(JobSlice.job_id, JobSlice.profile_id).where(JobSlice.job_id.in_(list(by_id)))
    ).all():
        slice_counts.setdefault(job_id, []).append(profile)
    printer_rows = session.exec(select(Printer).where(Printer.enabled)).all()
    fleet = list(fleet_views(session, lab, printer_rows, now).values())
    holds = Holds(session, lab, now) if lab is not None else None
    if fleet:
        busy = busy_until(session, printer_rows, now)
        finish = predict_finish(fleet, busy, views, now)
    else:  # no fleet known: one after the other
        finish, ahead = {}, timedelta(0)
        for view in queue_order(views):
            ahead += timedelta(seconds=view.estimated_time_s or 0)
            finish[view.id] = now + ahead if view.estimated_time_s else None
    out = []
    for view in queue_order(views):
        job, case, part = by_id[view.id]
        deadline = datetime.combine(case.needed_by, datetime.min.time(), tzinfo=now.tzinfo)
        predicted = finish.get(job.id)
        out.append(
            {
                "id": job.id,
                "serial": job.serial,
                "state": job.state,
                "error": job.error,
                "case_id": case.id,
                "case_code": case.code,
                "patient_code": case.patient_code,
                "device_type": case.device_type,
                "part": part.label,
                "needed_by": case.needed_by,
                "profile": job.profile_id,
                "profiles": sorted(slice_counts.get(job.id, [])),
                "orientation": job.orientation,
                "placement_warning": (job.placement or {}).get("warning"),
                "estimated_time_s": job.estimated_time_s,
                "filament_g": job.filament_g,
                "predicted_finish": predicted,
                "at_risk": predicted is not None and predicted > deadline,
                "no_printer": bool(fleet) and job.state == JobState.READY and predicted is None,
                "holds": holds.of(job) if holds else [],
                "urgent": job.urgent,
                "urgent_reason": job.urgent_reason,
            }
        )
    return out


def recent_jobs(session: Session, limit: int = 20) -> list[dict]:
    rows = session.exec(
        select(BuildJob, Case)
        .join(Case, Case.id == BuildJob.case_id)
        .where(BuildJob.state.in_(list(ON_PRINTER | AWAITING_OUTCOME | {JobState.COMPLETED})))
        .order_by(BuildJob.updated_at.desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": j.id,
            "serial": j.serial,
            "state": j.state,
            "outcome": j.outcome,
            "case_code": c.code,
            "patient_code": c.patient_code,
            "progress": j.progress,
            "error": j.error,
            "updated_at": j.updated_at,
        }
        for j, c in rows
    ]


def intake(session: Session) -> list[dict]:
    """Uploaded meshes not yet approved: being repaired, or waiting for the radiologist."""
    rows = session.exec(
        select(Part, Case)
        .join(Case, Case.id == Part.case_id)
        .where(Part.state.in_(["queued", "processing", "awaiting_units", "processed", "rejected"]))
        .order_by(Case.needed_by, Part.id)
    ).all()
    return [
        {
            "part_id": p.id,
            "label": p.label,
            "state": p.state,
            "verdict": p.verdict,
            "accepted": p.accepted_by is not None,
            "error": p.error,
            "case_id": c.id,
            "case_code": c.code,
            "patient_code": c.patient_code,
            "needed_by": c.needed_by,
        }
        for p, c in rows
    ]
