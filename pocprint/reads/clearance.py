"""The gate steps of a case, for the case page, the review page and the API."""

from __future__ import annotations

from sqlmodel import Session, select

from pocprint.services import gate
from pocprint.services.signatures import manifest
from pocprint.store.models import AppropriatenessReview, Case, Part, Signature, User


def _step(step: gate.Step, part_id: int | None = None, part_label: str = "") -> dict:
    return {
        "step": step.name,
        "meaning": step.meaning,
        "state": step.state,
        "part_id": part_id,
        "part_label": part_label,
        "explain": step.explain(),
        "signature": manifest(step.signature) if step.signature else None,
    }


def clearance(session: Session, case_id: int) -> list[dict] | None:
    case = session.get(Case, case_id)
    if case is None:
        return None
    steps = [_step(gate.review_step(session, case))]
    parts = session.exec(select(Part).where(Part.case_id == case_id).order_by(Part.id)).all()
    for part in parts:
        steps.append(_step(gate.segmentation_step(session, part), part.id, part.label))
        steps.append(_step(gate.design_step(session, part, case), part.id, part.label))
    return steps


def reviews(session: Session, case_id: int) -> list[dict]:
    names = dict(session.exec(select(User.id, User.full_name)).all())
    rows = session.exec(
        select(AppropriatenessReview)
        .where(AppropriatenessReview.case_id == case_id)
        .order_by(AppropriatenessReview.id.desc())
    ).all()
    return [{"review": r, "reviewer": names.get(r.reviewer_id, "?")} for r in rows]


def signature_history(session: Session, entity: str, entity_id: int) -> list[Signature]:
    """Every signature on an entity, withdrawals included, oldest first (never edited)."""
    return list(
        session.exec(
            select(Signature)
            .where(Signature.entity == entity, Signature.entity_id == str(entity_id))
            .order_by(Signature.id)
        ).all()
    )
