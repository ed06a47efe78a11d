"""Release of a device by the lab manager (an electronic signature), and its delivery.

The release signature is bound to the hash of what was checked: the approved mesh, the
G-code, and every post-processing step and QA measurement recorded. Anything recorded
afterwards voids it (see services/signatures.py), so a release always matches its record.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from pocprint.domain.roles import Permission, may
from pocprint.domain.verification import print_verification
from pocprint.faults import kill_point
from pocprint.services import audit, pacs, signatures
from pocprint.services.actors import Actor
from pocprint.services.errors import Forbidden, Invalid, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.services.postprocessing import checklist_status, require_workable
from pocprint.store.db import unit_of_work
from pocprint.store.models import (
    BuildJob,
    Case,
    Delivery,
    PostProcessStep,
    QaMeasurement,
    Signature,
    utcnow,
)

RELEASED = "released device"
DEVICE = "device"


def release_content(session: Session, job: BuildJob) -> dict:
    case = session.get(Case, job.case_id)
    steps = session.exec(
        select(PostProcessStep.id, PostProcessStep.step)
        .where(PostProcessStep.build_job_id == job.id)
        .order_by(PostProcessStep.id)
    ).all()
    measurements = session.exec(
        select(QaMeasurement.id, QaMeasurement.feature, QaMeasurement.passed)
        .where(QaMeasurement.build_job_id == job.id)
        .order_by(QaMeasurement.id)
    ).all()
    content = {
        "serial": job.serial,
        "case": case.code,
        "device_type": case.device_type,
        "mesh_sha256": job.mesh_sha256,
        "gcode_sha256": job.gcode_sha256,
        "printer_sha1": job.printer_sha1,
        "steps": [[i, s] for i, s in steps],
        "measurements": [[i, f, bool(p)] for i, f, p in measurements],
    }
    verification = print_verification(job.printer_sha1, job.printer_report)
    if job.printer_sha1 is None and verification:
        # Builds without a printer hash sign what did verify them (added only then, so
        # releases signed before keep their hash).
        content["print_verified_by"] = [verification["evidence"], verification["value"]]
    return content


def release_status(session: Session, job: BuildJob) -> signatures.SignatureStatus:
    return signatures.status(
        session,
        meaning=RELEASED,
        entity=DEVICE,
        entity_id=job.serial,
        content=release_content(session, job),
    )


def _job(session: Session, job_id: int) -> BuildJob:
    job = session.get(BuildJob, job_id)
    if job is None:
        raise NotFound(f"no build job {job_id}")
    return job


def release_device(lab: Lab, actor: Actor, job_id: int, password: str, comment: str = "") -> int:
    """Sign the release; refused while any checklist step is open or QA failed."""
    actor.require(Permission.RELEASE_DEVICE)
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        require_workable(session, job)
        if job.gcode_sha256 is None or not print_verification(job.printer_sha1, job.printer_report):
            raise WrongState(f"build {job.serial} has no verified print")
        states = checklist_status(session, job)
        open_ = [f"{s.step.title} ({s.state}{': ' + s.detail if s.detail else ''})" for s in states]
        open_ = [o for o, s in zip(open_, states, strict=True) if s.state != "done"]
        if open_:
            raise WrongState("not every step is done: " + "; ".join(open_))
        if release_status(session, job).valid:
            raise WrongState(f"device {job.serial} is already released")
        signature = signatures.sign(
            session,
            actor,
            password,
            settings=lab.settings,
            meaning=RELEASED,
            entity=DEVICE,
            entity_id=job.serial,
            content=release_content(session, job),
            comment=comment,
        )
        pacs.queue_archive(session, lab, actor, job)  # sent by the worker, never in the way
        kill_point("release.before_commit")
        return signature.id


def record_delivery(
    lab: Lab,
    actor: Actor,
    job_id: int,
    *,
    delivered_to: str,
    location: str = "",
    delivered_at: datetime | None = None,
    note: str = "",
) -> int:
    """Hand-over of a released device (to whom, where, when)."""
    if not (
        may(actor.roles, Permission.RECORD_POST_PROCESSING)
        or may(actor.roles, Permission.RELEASE_DEVICE)
    ):
        raise Forbidden(f"{actor.username} may not record deliveries")
    delivered_to = (delivered_to or "").strip()
    if not delivered_to or len(delivered_to) > 200:
        raise Invalid("say to whom the device was handed (up to 200 characters)")
    now = utcnow()
    delivered_at = delivered_at or now
    if delivered_at.tzinfo is None or delivered_at > now:
        raise Invalid("delivery time must be a UTC time, not in the future")
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        if not release_status(session, job).valid:
            raise WrongState(f"device {job.serial} is not released (or its release is void)")
        if session.exec(select(Delivery).where(Delivery.build_job_id == job.id)).first():
            raise WrongState(f"device {job.serial} was already delivered")
        row = Delivery(
            build_job_id=job.id,
            delivered_to=delivered_to,
            location=(location or "").strip()[:200],
            delivered_at=delivered_at,
            recorded_by=actor.user_id,
            note=(note or "").strip()[:1000],
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "device.delivered",
            DEVICE,
            job.serial,
            after={"to": delivered_to, "location": row.location, "delivered_at": delivered_at},
            reason=row.note or None,
        )
        return row.id


def release_signatures(session: Session, serial: str) -> list[Signature]:
    return session.exec(
        select(Signature)
        .where(Signature.entity == DEVICE, Signature.entity_id == serial)
        .order_by(Signature.id)
    ).all()
