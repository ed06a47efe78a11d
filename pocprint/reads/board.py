"""The fleet board: printers and the queue, with predicted finish times."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from pocprint.domain.dispatch import JobView, queue_order
from pocprint.domain.states import AWAITING_OUTCOME, ON_PRINTER, JobState
from pocprint.store.models import BuildJob, Case, Part, Printer, utcnow

QUEUE_STATES = (JobState.SLICE_QUEUED, JobState.SLICING, JobState.SLICE_FAILED, JobState.READY)


def printers(session: Session) -> list[dict]:
    rows = session.exec(select(Printer).where(Printer.enabled).order_by(Printer.name)).all()
    active = {
        j.printer_id: j
        for j in session.exec(
            select(BuildJob).where(BuildJob.state.in_(list(ON_PRINTER | AWAITING_OUTCOME)))
        ).all()
    }
    out = []
    for p in rows:
        job = active.get(p.id)
        temps = p.temperatures or {}
        out.append(
            {
                "id": p.id,
                "name": p.name,
                "serial": p.serial,
                "model": p.model,
                "material": p.material,
                "state": p.state,
                "detail": p.state_detail,
                "error": p.error,
                "plate_clear": p.plate_clear,
                "plate_clear_at": p.plate_clear_at,
                "progress": p.progress,
                "time_left_s": p.print_time_left_s,
                "temperatures": temps,
                "last_seen_at": p.last_seen_at,
                "calibration_due": p.calibration_due,
                "job": (
                    {
                        "id": job.id,
                        "serial": job.serial,
                        "state": job.state,
                        "progress": job.progress,
                    }
                    if job
                    else None
                ),
                "can_clear": p.state == "idle" and not p.plate_clear and job is None,
            }
        )
    return out


def queue(session: Session, now: datetime | None = None) -> list[dict]:
    """Jobs waiting for slicing or a printer, most urgent first, with a predicted finish."""
    now = now or utcnow()
    rows = session.exec(
        select(BuildJob, Case, Part)
        .join(Case, Case.id == BuildJob.case_id)
        .join(Part, Part.id == BuildJob.part_id)
        .where(BuildJob.state.in_(list(QUEUE_STATES)))
    ).all()
    by_id = {job.id: (job, case, part) for job, case, part in rows}
    views = [
        JobView(job.id, job.profile_id, case.needed_by, job.created_at, (0, 0, 0))
        for job, case, _part in rows
    ]
    ahead = timedelta(0)
    out = []
    for view in queue_order(views):
        job, case, part = by_id[view.id]
        estimate = timedelta(seconds=job.estimated_time_s or 0)
        ahead += estimate
        finish = now + ahead if job.estimated_time_s else None
        deadline = datetime.combine(case.needed_by, datetime.min.time(), tzinfo=now.tzinfo)
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
                "estimated_time_s": job.estimated_time_s,
                "filament_g": job.filament_g,
                "predicted_finish": finish,
                "at_risk": finish is not None and finish > deadline,
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
