"""Technician actions on a build job: pause, resume, cancel (each with a reason), urgent
override, orientation, resolve an interruption, record the outcome."""

from __future__ import annotations

from pocprint.connectors.base import ConnectorError
from pocprint.domain.placement import Orientation
from pocprint.domain.roles import Permission
from pocprint.domain.states import AWAITING_OUTCOME, JobState, advance_job
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound, PrinterProblem, WrongState
from pocprint.services.lab import Lab
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Printer, utcnow

OUTCOMES = ("accepted", "rejected")
WAITING = (JobState.SLICE_QUEUED, JobState.SLICING, JobState.SLICE_FAILED, JobState.READY)


def _job(session, job_id: int) -> BuildJob:
    job = session.get(BuildJob, job_id)
    if job is None:
        raise NotFound(f"no build job {job_id}")
    return job


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("a reason is required")
    return reason


def control_entry(actor: Actor, action: str, reason: str | None) -> dict:
    return {
        "action": action,
        "by": actor.username,
        "by_name": actor.full_name,
        "at": utcnow().isoformat(),
        "reason": reason,
    }


def add_control(job: BuildJob, entry: dict) -> None:
    job.controls = [*(job.controls or []), entry]  # a new list, so the JSON column is saved


def _printer_of(lab: Lab, session, job: BuildJob) -> tuple[Printer | None, bool]:
    printer = session.get(Printer, job.printer_id) if job.printer_id else None
    manual = (
        printer is not None and printer.name in lab.printers and lab.printers[printer.name].manual
    )
    return printer, manual


def cancel_job(lab: Lab, actor: Actor, job_id: int, reason: str) -> None:
    actor.require(Permission.OPERATE_PRINTERS)
    reason = _reason(reason)
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        state = JobState(job.state)
        printer, manual = _printer_of(lab, session, job)
        if state == JobState.DISPATCHING and not manual:
            raise WrongState(
                f"job {job.serial} is being sent to {printer.name if printer else 'a printer'}; "
                "wait until it has started, then cancel"
            )
        if state == JobState.PRINTING and printer is not None and not manual:
            # Ask the printer first; the record changes only if it accepted.
            try:
                lab.connector(printer.name).cancel()
            except ConnectorError as exc:
                raise PrinterProblem(f"{printer.name} did not accept the cancel: {exc}") from exc
        try:
            job.state = advance_job(state, JobState.CANCELLED)
        except Exception as exc:
            raise WrongState(f"job {job.serial} is {state}; it cannot be cancelled") from exc
        if manual and printer is not None:
            if state == JobState.DISPATCHING:
                printer.plate_clear = True  # never started: the plate is still empty
            else:
                printer.state, printer.state_detail, printer.job_file = (
                    "idle",
                    "Manual printer",
                    None,
                )
        job.cancel_reason = reason
        job.finished_at = job.updated_at = utcnow()
        add_control(job, control_entry(actor, "cancel", reason))
        audit.record(
            session,
            actor,
            "job.cancelled",
            "job",
            job.serial,
            before={"state": state},
            after={"state": JobState.CANCELLED, "printer": printer.name if printer else None},
            reason=reason,
        )


def _pause_or_resume(lab: Lab, actor: Actor, job_id: int, reason: str, pause: bool) -> None:
    actor.require(Permission.OPERATE_PRINTERS)
    reason = _reason(reason)
    action = "pause" if pause else "resume"
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        printer, manual = _printer_of(lab, session, job)
        if job.state != JobState.PRINTING or printer is None:
            raise WrongState(f"job {job.serial} is {job.state}; only a running print can {action}")
        wanted = "printing" if pause else "paused"
        if printer.state != wanted:
            raise WrongState(
                f"{printer.name} is {printer.state}; it must be {wanted} to {action} the print"
            )
        if manual:
            printer.state = "paused" if pause else "printing"
        else:
            connector = lab.connector(printer.name)
            try:
                connector.pause() if pause else connector.resume()
            except ConnectorError as exc:
                raise PrinterProblem(f"{printer.name} did not accept the {action}: {exc}") from exc
        job.updated_at = utcnow()
        add_control(job, control_entry(actor, action, reason))
        audit.record(
            session,
            actor,
            f"job.{action}d",
            "job",
            job.serial,
            before={"printer_state": wanted},
            after={"printer_state": "paused" if pause else "printing", "printer": printer.name},
            reason=reason,
        )
    lab.wake("poll")


def pause_job(lab: Lab, actor: Actor, job_id: int, reason: str) -> None:
    """Pause a running print from the tablet; the reason, who and when are recorded."""
    _pause_or_resume(lab, actor, job_id, reason, pause=True)


def resume_job(lab: Lab, actor: Actor, job_id: int, reason: str) -> None:
    _pause_or_resume(lab, actor, job_id, reason, pause=False)


def set_urgent(lab: Lab, actor: Actor, job_id: int, urgent: bool, reason: str) -> None:
    """Override the needed-by order: an urgent job goes before every other waiting job."""
    actor.require(Permission.PRIORITISE_JOBS)
    reason = _reason(reason)
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        if job.state not in WAITING:
            raise WrongState(f"job {job.serial} is {job.state}; only a waiting job can be moved")
        if job.urgent == urgent:
            raise WrongState(f"job {job.serial} is already {'urgent' if urgent else 'not urgent'}")
        before = {"urgent": job.urgent, "urgent_reason": job.urgent_reason}
        job.urgent = urgent
        job.urgent_reason = reason
        job.urgent_by = actor.user_id
        job.urgent_at = job.updated_at = utcnow()
        add_control(job, control_entry(actor, "urgent" if urgent else "not_urgent", reason))
        audit.record(
            session,
            actor,
            "job.priority",
            "job",
            job.serial,
            before=before,
            after={"urgent": urgent},
            reason=reason,
        )
    lab.wake("dispatch")


def set_orientation(lab: Lab, actor: Actor, job_id: int, orientation: str, reason: str) -> None:
    """Choose how the part is laid on the bed (stable face, or as designed); re-slices."""
    actor.require(Permission.OPERATE_PRINTERS)
    reason = _reason(reason)
    try:
        mode = Orientation(orientation)
    except ValueError:
        raise Invalid("orientation must be 'stable' or 'as_designed'") from None
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        state = JobState(job.state)
        if state not in (JobState.SLICE_QUEUED, JobState.SLICE_FAILED, JobState.READY):
            raise WrongState(f"job {job.serial} is {state}; orientation is chosen before dispatch")
        before = {"orientation": job.orientation, "state": state}
        job.orientation = mode.value
        job.orientation_reason = reason
        job.orientation_by = actor.user_id
        if state != JobState.SLICE_QUEUED:
            job.state = JobState.SLICE_QUEUED  # every slice must match the new orientation
        job.updated_at = utcnow()
        audit.record(
            session,
            actor,
            "job.orientation",
            "job",
            job.serial,
            before=before,
            after={"orientation": mode.value, "state": job.state},
            reason=reason,
        )
    lab.wake("slicing")


def resolve_interrupted(
    lab: Lab, actor: Actor, job_id: int, resolution: str, reason: str
) -> int | None:
    """A technician decides what happened to an interrupted print: ``printed`` (completed;
    the reason is the evidence), ``failed``, or ``reprint`` (failed, and the same approved
    design is queued again as a new build job, whose id is returned)."""
    actor.require(Permission.OPERATE_PRINTERS)
    reason = _reason(reason)
    target = {
        "printed": JobState.PRINTED,
        "failed": JobState.FAILED,
        "reprint": JobState.FAILED,
    }.get(resolution)
    if target is None:
        raise Invalid("resolution must be 'printed', 'failed' or 'reprint'")
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        if job.state != JobState.INTERRUPTED:
            raise WrongState(f"job {job.serial} is {job.state}, not interrupted")
        job.state = target
        job.finished_at = job.updated_at = utcnow()
        add_control(job, control_entry(actor, f"resolve_{resolution}", reason))
        again = _reprint(session, job) if resolution == "reprint" else None
        audit.record(
            session,
            actor,
            "job.interruption_resolved",
            "job",
            job.serial,
            before={"state": JobState.INTERRUPTED},
            after={
                "state": target,
                "resolution": resolution,
                "reprint": again.serial if again else None,
            },
            reason=reason,
        )
        if again is not None:
            audit.record(
                session,
                actor,
                "job.created",
                "job",
                again.serial,
                after={"state": again.state, "reprint_of": job.serial},
                reason=reason,
            )
        new_id = again.id if again else None
    if new_id is not None:
        lab.wake("slicing")
    return new_id


def _reprint(session, job: BuildJob) -> BuildJob:
    """A new build job for the same approved design; slicing and dispatch check the gates
    again. It keeps the orientation and any urgent override of the interrupted job."""
    from pocprint.services.cases import add_build_job

    return add_build_job(
        session,
        case_id=job.case_id,
        part_id=job.part_id,
        approval_id=job.approval_id,
        profile_id=job.profile_id,
        extents=job.extents,
        mesh_sha256=job.mesh_sha256,
        orientation=job.orientation,
        orientation_reason=job.orientation_reason,
        orientation_by=job.orientation_by,
        urgent=job.urgent,
        urgent_reason=job.urgent_reason,
        urgent_by=job.urgent_by,
        urgent_at=job.urgent_at,
    )


def record_outcome(lab: Lab, actor: Actor, job_id: int, outcome: str, note: str = "") -> None:
    actor.require(Permission.RECORD_OUTCOME)
    if outcome not in OUTCOMES:
        raise Invalid("outcome must be 'accepted' or 'rejected'")
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        state = JobState(job.state)
        if state not in AWAITING_OUTCOME:
            raise WrongState(f"job {job.serial} is {state}; its print has not ended")
        if outcome == "accepted" and state != JobState.PRINTED:
            raise WrongState(f"job {job.serial} is {state}: only a completed print can be accepted")
        if outcome == "rejected" and not note.strip():
            raise Invalid("say why the build was rejected")
        job.state = advance_job(state, JobState.COMPLETED)
        job.outcome = outcome
        job.outcome_note = note.strip()
        job.outcome_by = actor.user_id
        job.outcome_at = job.updated_at = utcnow()
        audit.record(
            session,
            actor,
            "job.outcome",
            "job",
            job.serial,
            before={"state": state},
            after={"state": JobState.COMPLETED, "outcome": outcome},
            reason=note.strip() or None,
        )
