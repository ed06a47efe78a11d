"""Technician actions on a build job: cancel, resolve an interruption, record the outcome."""

from __future__ import annotations

from pocprint.connectors.base import ConnectorError
from pocprint.domain.roles import Permission
from pocprint.domain.states import AWAITING_OUTCOME, JobState, advance_job
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound, PrinterProblem, WrongState
from pocprint.services.lab import Lab
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Printer, utcnow

OUTCOMES = ("accepted", "rejected")


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


def cancel_job(lab: Lab, actor: Actor, job_id: int, reason: str) -> None:
    actor.require(Permission.OPERATE_PRINTERS)
    reason = _reason(reason)
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        state = JobState(job.state)
        printer = session.get(Printer, job.printer_id) if job.printer_id else None
        if state == JobState.PRINTING and printer is not None:
            # Ask the printer first; the record changes only if it accepted.
            try:
                lab.connector(printer.name).cancel()
            except ConnectorError as exc:
                raise PrinterProblem(f"{printer.name} did not accept the cancel: {exc}") from exc
        try:
            job.state = advance_job(state, JobState.CANCELLED)
        except Exception as exc:
            raise WrongState(f"job {job.serial} is {state}; it cannot be cancelled") from exc
        job.cancel_reason = reason
        job.finished_at = job.updated_at = utcnow()
        audit.record(
            session,
            actor,
            "job.cancelled",
            "job",
            job.serial,
            before={"state": state},
            after={"state": JobState.CANCELLED},
            reason=reason,
        )


def resolve_interrupted(lab: Lab, actor: Actor, job_id: int, resolution: str, reason: str) -> None:
    """A technician decides what happened to an interrupted print (printed or failed)."""
    actor.require(Permission.OPERATE_PRINTERS)
    reason = _reason(reason)
    target = {"printed": JobState.PRINTED, "failed": JobState.FAILED}.get(resolution)
    if target is None:
        raise Invalid("resolution must be 'printed' or 'failed'")
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        if job.state != JobState.INTERRUPTED:
            raise WrongState(f"job {job.serial} is {job.state}, not interrupted")
        job.state = target
        job.finished_at = job.updated_at = utcnow()
        audit.record(
            session,
            actor,
            "job.interruption_resolved",
            "job",
            job.serial,
            before={"state": JobState.INTERRUPTED},
            after={"state": target},
            reason=reason,
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
