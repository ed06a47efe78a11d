"""When a design approval stops holding (withdrawn, or voided by a change to what it signed),
the part goes back to the approval step and the jobs made under it never go on: those not yet
on a printer are cancelled with the reason. A new approval makes a new build job."""

from __future__ import annotations

from sqlmodel import Session, select

from pocprint.domain.states import BEFORE_PRINTER, JobState, PartState
from pocprint.services import gate
from pocprint.services.actors import Actor
from pocprint.services.transitions import move
from pocprint.store.models import BuildJob, Case, Part, utcnow


def reopen_design(session: Session, actor: Actor, part: Part, why: str) -> list[str]:
    """Part approved -> processed, its waiting jobs cancelled; returns their serials."""
    if part.state != PartState.APPROVED:
        return []
    move(session, part, PartState.PROCESSED, actor=actor, action="part.approval_ended", reason=why)
    cancelled = []
    for job in session.exec(
        select(BuildJob).where(
            BuildJob.part_id == part.id, BuildJob.state.in_(list(BEFORE_PRINTER))
        )
    ).all():
        move(
            session,
            job,
            JobState.CANCELLED,
            actor=actor,
            action="job.cancelled",
            reason=why,
            cancel_reason=why,
            finished_at=utcnow(),
        )
        cancelled.append(job.serial)
    return cancelled


def reopen_void_designs(session: Session, actor: Actor, case: Case, why: str) -> list[str]:
    """After a change to the order: every approved part of the case whose design signature
    no longer matches its content goes back to the approval step."""
    cancelled = []
    for part in session.exec(
        select(Part).where(Part.case_id == case.id, Part.state == PartState.APPROVED)
    ).all():
        if gate.design_step(session, part, case).state == "void":
            cancelled += reopen_design(session, actor, part, why)
    return cancelled
