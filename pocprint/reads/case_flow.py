"""The facts the case flow (domain/case_flow.py) judges, read from the database: gate steps,
each part's latest build, its post-processing, QA, release and delivery, and hold reasons."""

from __future__ import annotations

from sqlmodel import Session, select

from pocprint.domain.case_flow import CaseFacts, PartFacts, Position, position
from pocprint.domain.states import Verdict
from pocprint.reads.holds import Holds
from pocprint.services import gate
from pocprint.services.errors import WrongState
from pocprint.services.postprocessing import checklist_status
from pocprint.services.release import release_status
from pocprint.store.models import BuildJob, Case, Delivery, Part, QaDisposition


def _build_facts(session: Session, job: BuildJob) -> dict:
    out: dict = {}
    disposition = session.exec(
        select(QaDisposition.decision).where(QaDisposition.build_job_id == job.id)
    ).first()
    out["disposition"] = disposition
    if job.state != "completed" or job.outcome != "accepted":
        return out
    try:
        steps = checklist_status(session, job)
    except WrongState:
        steps = []
    out["post_open"] = any(s.step.kind == "form" and s.state == "open" for s in steps)
    qa = [s.state for s in steps if s.step.kind != "form"]
    out["qa_state"] = "failed" if "failed" in qa else "open" if "open" in qa else "done"
    out["release_valid"] = release_status(session, job).valid
    out["delivered"] = (
        session.exec(select(Delivery.id).where(Delivery.build_job_id == job.id)).first() is not None
    )
    return out


def latest_jobs(session: Session, case_id: int) -> dict[int, BuildJob]:
    """Each part's latest build job (a reprint replaces the build it reprints)."""
    jobs = session.exec(
        select(BuildJob).where(BuildJob.case_id == case_id).order_by(BuildJob.id)
    ).all()
    return {j.part_id: j for j in jobs}


def case_facts(session: Session, case: Case, lab=None, holds: Holds | None = None) -> CaseFacts:
    review = gate.review_step(session, case)
    parts = session.exec(select(Part).where(Part.case_id == case.id).order_by(Part.id)).all()
    latest = latest_jobs(session, case.id)
    holds = holds or Holds(session, lab)
    facts = []
    for part in parts:
        job = latest.get(part.id)
        usable = part.verdict == Verdict.REPAIRED or (
            part.verdict == Verdict.NEEDS_ATTENTION and part.accepted_by is not None
        )
        extra = {}
        if job is not None:
            extra = dict(
                job_state=job.state,
                serial=job.serial,
                outcome=job.outcome,
                holds=tuple(holds.of(job)),
                job_error=job.error,
                **_build_facts(session, job),
            )
        facts.append(
            PartFacts(
                part_id=part.id,
                label=part.label,
                part_state=part.state,
                usable=usable and part.state in ("processed", "approved"),
                too_complex=part.verdict == Verdict.TOO_COMPLEX,
                signoff_valid=gate.segmentation_step(session, part).valid,
                design_state=gate.design_step(session, part, case).state,
                **extra,
            )
        )
    return CaseFacts(case.review_status, review.state, tuple(facts))


def case_position(session: Session, case: Case, lab=None, holds: Holds | None = None) -> Position:
    return position(case_facts(session, case, lab, holds))
