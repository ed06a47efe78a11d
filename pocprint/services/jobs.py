"""Technician actions on a build job: pause, resume, cancel (each with a reason), urgent
override, orientation, resolve an interruption, record the outcome."""

from __future__ import annotations

from pocprint.connectors.base import ConnectorError
from pocprint.connectors.manual import MANUAL_DETAIL
from pocprint.domain.placement import Orientation
from pocprint.domain.roles import Permission
from pocprint.domain.states import AWAITING_OUTCOME, JOB_TRANSITIONS, JobState, PrinterState
from pocprint.domain.steps import Step
from pocprint.faults import kill_point
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound, PrinterProblem, WrongState
from pocprint.services.lab import Lab
from pocprint.services.transitions import StaleState, move, update_if
from pocprint.store.db import read_session, unit_of_work
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


def _read_job(lab: Lab, job_id: int) -> tuple[BuildJob, Printer | None, bool]:
    """The job, its printer and whether that printer is manual, read without a write lock
    (the printer is asked before anything is written)."""
    with read_session(lab.engine) as session:
        job = _job(session, job_id)
        printer, manual = _printer_of(lab, session, job)
        return job, printer, manual


def cancel_job(lab: Lab, actor: Actor, job_id: int, reason: str) -> None:
    actor.require(Permission.OPERATE_PRINTERS)
    reason = _reason(reason)
    job, printer, manual = _read_job(lab, job_id)
    state = JobState(job.state)
    if state == JobState.DISPATCHING and not manual:
        raise WrongState(
            f"job {job.serial} is being sent to {printer.name if printer else 'a printer'}; "
            "wait until it has started, then cancel"
        )
    if state not in JOB_TRANSITIONS or JobState.CANCELLED not in JOB_TRANSITIONS[state]:
        raise WrongState(f"job {job.serial} is {state}; it cannot be cancelled")
    sent = False
    if state == JobState.PRINTING and printer is not None and not manual:
        # Ask the printer first, outside any transaction; the record changes only if it
        # accepted.
        try:
            lab.connector(printer.name).cancel()
        except ConnectorError as exc:
            raise PrinterProblem(f"{printer.name} did not accept the cancel: {exc}") from exc
        sent = True
        kill_point("cancel.sent")
    with unit_of_work(lab.engine) as session:
        row = _job(session, job_id)
        try:
            move(
                session,
                row,
                JobState.CANCELLED,
                actor=actor,
                action="job.cancelled",
                expected=state,
                after={"printer": printer.name if printer else None, "sent_to_printer": sent},
                reason=reason,
                cancel_reason=reason,
                finished_at=utcnow(),
                controls=[*(row.controls or []), control_entry(actor, "cancel", reason)],
            )
        except StaleState as exc:
            sent_note = " (the printer did stop its print)" if sent else ""
            raise WrongState(f"job {row.serial} changed meanwhile{sent_note}: {exc}") from exc
        if manual and printer is not None:
            manual_printer = session.get(Printer, printer.id)
            if state == JobState.DISPATCHING:  # never started: the plate is still empty
                update_if(session, manual_printer, state=manual_printer.state, plate_clear=True)
            elif manual_printer.state != PrinterState.IDLE:
                move(
                    session,
                    manual_printer,
                    PrinterState.IDLE,
                    actor=actor,
                    action="printer.state",
                    reason="the print was cancelled",
                    state_detail=MANUAL_DETAIL,
                    job_file=None,
                )


def _pause_or_resume(lab: Lab, actor: Actor, job_id: int, reason: str, pause: bool) -> None:
    actor.require(Permission.OPERATE_PRINTERS)
    reason = _reason(reason)
    action = "pause" if pause else "resume"
    job, printer, manual = _read_job(lab, job_id)
    if job.state != JobState.PRINTING or printer is None:
        raise WrongState(f"job {job.serial} is {job.state}; only a running print can {action}")
    wanted = PrinterState.PRINTING if pause else PrinterState.PAUSED
    if printer.state != wanted:
        raise WrongState(
            f"{printer.name} is {printer.state}; it must be {wanted} to {action} the print"
        )
    if not manual:  # the printer is asked outside any transaction
        connector = lab.connector(printer.name)
        try:
            connector.pause() if pause else connector.resume()
        except ConnectorError as exc:
            raise PrinterProblem(f"{printer.name} did not accept the {action}: {exc}") from exc
    with unit_of_work(lab.engine) as session:
        row = _job(session, job_id)
        entry = control_entry(actor, action, reason)
        # The control is recorded even if the job moved on meanwhile: the printer did it.
        row.controls = [*(row.controls or []), entry]
        row.updated_at = utcnow()
        audit.record(
            session,
            actor,
            f"job.{action}d",
            "job",
            row.serial,
            before={"printer_state": wanted},
            after={"printer_state": "paused" if pause else "printing", "printer": printer.name},
            reason=reason,
        )
        if manual:
            move(
                session,
                session.get(Printer, printer.id),
                PrinterState.PAUSED if pause else PrinterState.PRINTING,
                actor=actor,
                action="printer.state",
                expected=wanted,
                reason=reason,
            )
    lab.due(Step.POLL)


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
    lab.due(Step.DISPATCH)


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
        fields = dict(
            orientation=mode.value,
            orientation_reason=reason,
            orientation_by=actor.user_id,
            updated_at=utcnow(),
        )
        if state == JobState.SLICE_QUEUED:
            before = job.orientation
            if not update_if(session, job, state=state, **fields):
                raise WrongState(f"job {job.serial} is being sliced; try again when it is ready")
            audit.record(
                session,
                actor,
                "job.orientation",
                "job",
                job.serial,
                before={"orientation": before, "state": state},
                after={"orientation": mode.value, "state": state},
                reason=reason,
            )
        else:  # every slice must match the new orientation
            move(
                session,
                job,
                JobState.SLICE_QUEUED,
                actor=actor,
                action="job.orientation",
                before={"orientation": job.orientation},
                after={"orientation": mode.value},
                reason=reason,
                retry_at=None,
                **fields,
            )
    lab.due(Step.SLICE_JOB, job_id)


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
        again = _reprint(session, job) if resolution == "reprint" else None
        move(
            session,
            job,
            target,
            actor=actor,
            action="job.interruption_resolved",
            expected=JobState.INTERRUPTED,
            after={"resolution": resolution, "reprint": again.serial if again else None},
            reason=reason,
            finished_at=utcnow(),
            controls=[*(job.controls or []), control_entry(actor, f"resolve_{resolution}", reason)],
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
        lab.due(Step.SLICE_JOB, new_id)
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
        move(
            session,
            job,
            JobState.COMPLETED,
            actor=actor,
            action="job.outcome",
            expected=state,
            after={"outcome": outcome},
            reason=note.strip() or None,
            outcome=outcome,
            outcome_note=note.strip(),
            outcome_by=actor.user_id,
            outcome_at=utcnow(),
        )
        kill_point("outcome.before_commit")
