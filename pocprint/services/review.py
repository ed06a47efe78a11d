"""Sign-offs of the clinical gate: the appropriateness review of a case, the segmentation
sign-off of a mesh, and withdrawals. Design approval is cases.approve_design."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from pocprint.domain.appropriateness import Decision, needs_justification
from pocprint.domain.roles import Permission
from pocprint.domain.states import PartState
from pocprint.services import audit, gate, signatures
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotApproved, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.services.reopen import reopen_design
from pocprint.store.db import unit_of_work
from pocprint.store.models import (
    AppropriatenessReview,
    AppropriatenessScenario,
    Case,
    Part,
    Signature,
)

STATUS_AFTER = {
    Decision.APPROVE: "approved",
    Decision.REJECT: "rejected",
    Decision.MORE_INFO: "info_requested",
}
OVERLAY_TYPES = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg"}
MAX_OVERLAY_BYTES = 20 * 1024 * 1024


def _scenario(session: Session, key: str | None) -> AppropriatenessScenario | None:
    """`key` is "scenario_id@catalog_version"; empty means the case matches no scenario."""
    if not key:
        return None
    scenario_id, _, version = key.partition("@")
    row = session.exec(
        select(AppropriatenessScenario).where(
            AppropriatenessScenario.scenario_id == scenario_id,
            AppropriatenessScenario.catalog_version == version,
            AppropriatenessScenario.active.is_(True),
        )
    ).first()
    if row is None:
        raise Invalid(f"no active catalog scenario {key}")
    return row


def review_case(
    lab: Lab,
    actor: Actor,
    case_id: int,
    *,
    decision: str,
    scenario: str | None,
    justification: str = "",
    password: str = "",
) -> int:
    """Record the radiologist's decision. Approve and reject are signed ("reviewed
    appropriateness", password re-entered); asking for more information is recorded and
    audited. A rejection is final: it stops the case."""
    actor.require(Permission.REVIEW_APPROPRIATENESS)
    try:
        choice = Decision(decision)
    except ValueError as exc:
        raise Invalid("decision must be approve, reject or more_info") from exc
    justification = (justification or "").strip()
    if len(justification) > 2000:
        raise Invalid("justification is longer than 2000 characters")
    with unit_of_work(lab.engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        if case.review_status == gate.REJECTED:
            raise WrongState(f"case {case.code} was already rejected; a rejection is final")
        row = _scenario(session, scenario)
        if needs_justification(choice, row.band if row else None, row is not None) and (
            len(justification) < 10
        ):
            raise Invalid(_why_justify(choice, row))
        review = AppropriatenessReview(
            case_id=case.id,
            decision=choice.value,
            scenario_id=row.scenario_id if row else None,
            catalog_version=row.catalog_version if row else None,
            scenario_text=row.scenario_text if row else None,
            rating=row.rating if row else None,
            band=row.band if row else None,
            justification=justification,
            reviewer_id=actor.user_id,
        )
        session.add(review)
        session.flush()
        before = case.review_status
        case.review_status = STATUS_AFTER[choice]
        if choice != Decision.MORE_INFO:
            signature = signatures.sign(
                session,
                actor,
                password,
                settings=lab.settings,
                meaning=gate.REVIEWED_APPROPRIATENESS,
                entity="case",
                entity_id=case.id,
                content=gate.review_content(case, review),
                comment=justification,
            )
            review.signature_id = signature.id
        audit.record(
            session,
            actor,
            f"review.{choice.value}",
            "case",
            case.code,
            before={"review_status": before},
            after={
                "review_status": case.review_status,
                "scenario": review.scenario_id,
                "catalog_version": review.catalog_version,
                "rating": review.rating,
                "band": review.band,
                "signature": review.signature_id,
            },
            reason=justification or None,
        )
        return review.id


def _why_justify(choice: Decision, row: AppropriatenessScenario | None) -> str:
    if choice == Decision.REJECT:
        return "a rejection needs the reason (at least 10 characters)"
    if choice == Decision.MORE_INFO:
        return "say what information is needed (at least 10 characters)"
    if row is None:
        return "approving a case that matches no catalog scenario needs a written justification"
    rated = f"rated {row.rating}" if row.rating is not None else f"in band {row.band}"
    return f"approving a scenario {rated} (6 or lower) needs a written justification"


def _check_overlay(path: Path) -> None:
    size = path.stat().st_size
    if size == 0 or size > MAX_OVERLAY_BYTES:
        raise Invalid("the overlay screenshot must be a PNG or JPEG image under 20 MB")
    with path.open("rb") as fh:
        head = fh.read(8)
    if not any(head.startswith(magic) for magic in OVERLAY_TYPES):
        raise Invalid("the overlay screenshot must be a PNG or JPEG image")


def sign_segmentation(
    lab: Lab,
    actor: Actor,
    part_id: int,
    password: str,
    overlay_path: Path | None = None,
    comment: str = "",
) -> int:
    """The radiologist attests the mesh matches the images ("approved segmentation"),
    optionally with a screenshot of the mesh overlaid on the images (kept in the blob store;
    its hash is part of what is signed)."""
    actor.require(Permission.SIGN_SEGMENTATION)
    if overlay_path is not None:
        _check_overlay(overlay_path)
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        if part is None:
            raise NotFound(f"no part {part_id}")
        case = session.get(Case, part.case_id)
        if case.review_status == gate.REJECTED:
            raise NotApproved(f"case {case.code} was rejected at appropriateness review")
        if part.state not in (PartState.PROCESSED, PartState.APPROVED) or not part.units:
            raise WrongState(
                f"part is {part.state}; sign the segmentation once the mesh is analysed "
                "and its unit is known"
            )
        overlay_sha = lab.blobs.put_file(overlay_path)[0] if overlay_path else None
        signature = signatures.sign(
            session,
            actor,
            password,
            settings=lab.settings,
            meaning=gate.APPROVED_SEGMENTATION,
            entity="part",
            entity_id=part.id,
            content=gate.segmentation_content(part, overlay_sha),
            comment=comment,
        )
        return signature.id


WITHDRAW_PERMISSION = {
    gate.REVIEWED_APPROPRIATENESS: Permission.REVIEW_APPROPRIATENESS,
    gate.APPROVED_SEGMENTATION: Permission.SIGN_SEGMENTATION,
    gate.APPROVED_DESIGN: Permission.APPROVE_DESIGN,
}


def withdraw_signoff(lab: Lab, actor: Actor, signature_id: int, password: str, reason: str) -> int:
    """Withdraw a gate signature with a new, signed record; the case goes back to that step.
    Only someone who may give that kind of signature may withdraw it."""
    with unit_of_work(lab.engine) as session:
        original = session.get(Signature, signature_id)
        if original is None or original.meaning not in WITHDRAW_PERMISSION:
            raise NotFound(f"no gate signature {signature_id}")
        actor.require(WITHDRAW_PERMISSION[original.meaning])
        withdrawal = signatures.withdraw(
            session, lab.settings, actor, password, signature_id, reason
        )
        if original.meaning == gate.REVIEWED_APPROPRIATENESS:
            case = session.get(Case, int(original.entity_id))
            if case.review_status == "approved":
                case.review_status = "awaiting_review"
        elif original.meaning == gate.APPROVED_DESIGN:
            part = session.get(Part, int(original.entity_id))
            if (
                part is not None
                and not gate.design_step(session, part, session.get(Case, part.case_id)).valid
            ):
                reopen_design(
                    session,
                    actor,
                    part,
                    f"design approval withdrawn by {actor.full_name}: {reason.strip()}",
                )
        return withdrawal.id
