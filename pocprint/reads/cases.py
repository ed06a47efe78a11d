"""Cases for lists and the case page."""

from __future__ import annotations

from sqlmodel import Session, func, select

from pocprint.store.models import Approval, BuildJob, Case, Part, User


def case_list(session: Session, limit: int = 200) -> list[dict]:
    counts = dict(
        session.exec(select(Part.case_id, func.count(Part.id)).group_by(Part.case_id)).all()
    )
    rows = session.exec(select(Case).order_by(Case.needed_by, Case.id).limit(limit)).all()
    return [
        {
            "id": c.id,
            "code": c.code,
            "patient_code": c.patient_code,
            "device_type": c.device_type,
            "indication": c.indication,
            "needed_by": c.needed_by,
            "parts": counts.get(c.id, 0),
            "review_status": c.review_status,
        }
        for c in rows
    ]


def case_detail(session: Session, case_id: int) -> dict | None:
    case = session.get(Case, case_id)
    if case is None:
        return None
    names = dict(session.exec(select(User.id, User.full_name)).all())
    parts = session.exec(select(Part).where(Part.case_id == case_id).order_by(Part.id)).all()
    approvals = session.exec(select(Approval).where(Approval.case_id == case_id)).all()
    jobs = session.exec(
        select(BuildJob).where(BuildJob.case_id == case_id).order_by(BuildJob.id)
    ).all()
    return {
        "case": case,
        "created_by": names.get(case.created_by, "?"),
        "parts": [
            {
                "part": p,
                "uploaded_by": names.get(p.uploaded_by, "?"),
                "approvals": [a for a in approvals if a.part_id == p.id],
                "jobs": [j for j in jobs if j.part_id == p.id],
            }
            for p in parts
        ],
    }
