"""The clinical gate: what must be signed, on which content, before a job may be sliced or
dispatched. Every signature is judged against the current content, so a changed mesh, order
or prescription voids it and the case goes back to the step that needs signing again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from pocprint.domain.appropriateness import Decision
from pocprint.domain.design_warnings import design_warnings
from pocprint.services import audit, signatures
from pocprint.services.actors import SYSTEM
from pocprint.services.errors import NotApproved
from pocprint.store.models import (
    AppropriatenessReview,
    Approval,
    AuditEvent,
    BuildJob,
    Case,
    Part,
    Signature,
)

REVIEWED_APPROPRIATENESS = "reviewed appropriateness"
APPROVED_SEGMENTATION = "approved segmentation"
APPROVED_DESIGN = "approved design"

REJECTED = "rejected"
STEP_NAMES = {
    REVIEWED_APPROPRIATENESS: "appropriateness review",
    APPROVED_SEGMENTATION: "segmentation sign-off",
    APPROVED_DESIGN: "design approval",
}
WHY = {
    "missing": "not signed yet",
    "void": "void: the signed content changed since; it must be signed again",
    "withdrawn": "withdrawn; it must be signed again",
    "not_approved": "the latest decision is not an approval",
}


# ----------------------------------------------------------------- what each signature binds


def order_content(case: Case) -> dict:
    """The order fields an appropriateness review judges (not the dates: moving a deadline
    does not change whether printing is appropriate)."""
    return {
        "case": case.code,
        "patient_code": case.patient_code,
        "indication": case.indication,
        "icd10_code": case.icd10_code,
        "intended_use": case.intended_use,
        "diagnostic_use": case.diagnostic_use,
        "anatomy": case.anatomy or [],
        "device_type": case.device_type,
        "regulatory_route": case.regulatory_route,
        "imaging": {
            # The keyed hash, never the number (the key keeps its name so a signature over an
            # order without an accession number keeps its hash); a plain value only in a case
            # from before 0010 that start-up could not seal (no identifiers key).
            "accession_number": (
                f"hmac-sha256:{case.accession_hmac}"
                if case.accession_hmac
                else case.accession_number
            ),
            "modality": case.modality,
            "slice_thickness_mm": case.slice_thickness_mm,
        },
        "segmentation_software": [case.segmentation_software, case.segmentation_version],
    }


def review_content(case: Case, review: AppropriatenessReview) -> dict:
    return {
        "order": order_content(case),
        "decision": review.decision,
        "scenario": {
            "scenario_id": review.scenario_id,
            "catalog_version": review.catalog_version,
            "rating": review.rating,
            "band": review.band,
        },
        "justification": review.justification,
    }


def segmentation_content(part: Part, overlay_sha256: str | None) -> dict:
    """The radiologist attests this mesh, at this scale, matches the images."""
    return {
        "part": part.id,
        "case_id": part.case_id,
        "source_sha256": part.source_sha256,
        "units": part.units,
        "scale_to_mm": part.scale_to_mm,
        "overlay_sha256": overlay_sha256,
    }


def design_content(part: Part, case: Case) -> dict:
    """The repaired mesh to print, and for custom-made devices the prescribed design; the
    ordered (prescribed) material and every warning the approver was shown.

    Material and warnings are added only when there are some, so signatures given before
    orders named a material keep their hash; a signature without a warning the mesh now has
    is void (the approver never saw it)."""
    content = {
        "part": part.id,
        "case": case.code,
        "source_sha256": part.source_sha256,
        "repaired_sha256": part.repaired_sha256,
        "units": part.units,
        "scale_to_mm": part.scale_to_mm,
        "regulatory_route": case.regulatory_route,
        "design_characteristics": case.design_characteristics,
    }
    if case.material:
        content["material"] = case.material
    warnings = design_warnings(part.repair_report, part.analysis_after)
    if warnings:
        content["warnings"] = warnings
    return content


# ----------------------------------------------------------------- judging the current state


@dataclass(frozen=True)
class Step:
    meaning: str
    state: str  # valid | missing | void | withdrawn | not_approved | rejected
    signature: Signature | None = None

    @property
    def valid(self) -> bool:
        return self.state == "valid"

    @property
    def name(self) -> str:
        return STEP_NAMES[self.meaning]

    def explain(self) -> str:
        return f"{self.name}: {WHY.get(self.state, self.state)}"


def latest_signed_review(session: Session, case_id: int) -> AppropriatenessReview | None:
    return session.exec(
        select(AppropriatenessReview)
        .where(
            AppropriatenessReview.case_id == case_id,
            AppropriatenessReview.signature_id.is_not(None),
        )
        .order_by(AppropriatenessReview.id.desc())
    ).first()


def review_step(session: Session, case: Case) -> Step:
    review = latest_signed_review(session, case.id)
    if review is None:
        return Step(REVIEWED_APPROPRIATENESS, "missing")
    result = signatures.status(
        session,
        meaning=REVIEWED_APPROPRIATENESS,
        entity="case",
        entity_id=case.id,
        content=review_content(case, review),
    )
    if result.valid and review.decision == Decision.REJECT:
        return Step(REVIEWED_APPROPRIATENESS, REJECTED, result.signature)
    if result.valid and case.review_status != "approved":
        return Step(REVIEWED_APPROPRIATENESS, "not_approved", result.signature)
    return Step(REVIEWED_APPROPRIATENESS, result.state, result.signature)


def _latest(session: Session, meaning: str, entity: str, entity_id) -> Signature | None:
    return session.exec(
        select(Signature)
        .where(
            Signature.meaning == meaning,
            Signature.entity == entity,
            Signature.entity_id == str(entity_id),
        )
        .order_by(Signature.id.desc())
    ).first()


def segmentation_step(session: Session, part: Part) -> Step:
    latest = _latest(session, APPROVED_SEGMENTATION, "part", part.id)
    overlay = (latest.content or {}).get("overlay_sha256") if latest else None
    result = signatures.status(
        session,
        meaning=APPROVED_SEGMENTATION,
        entity="part",
        entity_id=part.id,
        content=segmentation_content(part, overlay),
    )
    return Step(APPROVED_SEGMENTATION, result.state, result.signature)


def design_step(session: Session, part: Part, case: Case) -> Step:
    result = signatures.status(
        session,
        meaning=APPROVED_DESIGN,
        entity="part",
        entity_id=part.id,
        content=design_content(part, case),
    )
    return Step(APPROVED_DESIGN, result.state, result.signature)


def _job_design_step(session: Session, job: BuildJob, part: Part, case: Case) -> Step:
    """The job's own approval must be the valid design signature, on the mesh the job holds."""
    step = design_step(session, part, case)
    approval = session.get(Approval, job.approval_id) if job.approval_id else None
    if approval is None or approval.signature_id is None:
        return Step(APPROVED_DESIGN, "missing")
    if not step.valid:
        return step
    if job.mesh_sha256 != part.repaired_sha256 or approval.content_sha256 != job.mesh_sha256:
        return Step(APPROVED_DESIGN, "void", step.signature)
    return step


def clearance_problems(session: Session, job: BuildJob, step: str = "dispatch") -> list[str]:
    """Why the job may not go on to `step`, in words (empty: it may). Reads only, writes
    nothing: pages use it to show why a job is held.

    step="slicing": design approval only (no slicing before design approval).
    step="dispatch": appropriateness approval, segmentation sign-off and design approval,
    all on the current content. A rejected case stops at both.
    """
    part = session.get(Part, job.part_id)
    case = session.get(Case, job.case_id)
    if part is None or case is None:
        return ["the job's part or case no longer exists"]
    review = review_step(session, case)
    if case.review_status == REJECTED or review.state == REJECTED:
        return [f"case {case.code} was rejected at appropriateness review: stopped"]
    checks = [_job_design_step(session, job, part, case)]
    if step != "slicing":
        checks = [review, segmentation_step(session, part), *checks]
    return [c.explain() for c in checks if not c.valid]


def require_clinical_clearance(session: Session, job: BuildJob, step: str = "dispatch") -> None:
    """Refuse, with the exact missing or void steps, unless the job may go on (see
    `clearance_problems`). Each decision is audited (once per change, not on every
    scheduler pass)."""
    problems = clearance_problems(session, job, step)
    _audit_decision(session, job, step, problems)
    if problems:
        raise NotApproved(f"job {job.serial} may not go to {step}: " + "; ".join(problems))


def _audit_decision(session: Session, job: BuildJob, step: str, problems: list[str]) -> None:
    action = "gate.refused" if problems else "gate.cleared"
    reason = "; ".join(problems) or None
    last = session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.entity == "job",
            AuditEvent.entity_id == job.serial,
            AuditEvent.action.in_(("gate.refused", "gate.cleared")),
        )
        .order_by(AuditEvent.id.desc())
    ).first()
    if (
        last is not None
        and last.action == action
        and last.reason == reason
        and (last.after or {}).get("step") == step
    ):
        return
    audit.record(session, SYSTEM, action, "job", job.serial, after={"step": step}, reason=reason)
