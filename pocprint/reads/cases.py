"""Cases for lists and the case page."""

from __future__ import annotations

from datetime import date, timedelta

from sqlmodel import Session, func, or_, select

from pocprint.domain.case_flow import bar
from pocprint.domain.design_warnings import design_warnings
from pocprint.reads.case_flow import case_position
from pocprint.reads.holds import Holds
from pocprint.services import gate
from pocprint.services.release import release_status
from pocprint.store.models import Approval, BuildJob, Case, Part, User, utcnow

WEEK = timedelta(days=7)


NEEDED_BY = {"overdue": "overdue", "week": "within 7 days", "later": "later"}


def case_list(
    session: Session,
    limit: int = 200,
    lab=None,
    *,
    step: str = "",
    needed_by: str = "",
    device_type: str = "",
    query: str = "",
    permissions: frozenset[str] | None = None,
    today: date | None = None,
) -> list[dict]:
    """Cases, soonest needed first, each with where it really is (the case flow).

    Filters: `step` (a flow step key, or "delivered" / "stopped"), `needed_by` (overdue,
    week, later), `device_type`, `query` (case code or device serial, any part of it) and
    `permissions`: only cases whose next action the holder of these permissions may take
    ("mine to act on")."""
    today = today or utcnow().date()
    counts = dict(
        session.exec(select(Part.case_id, func.count(Part.id)).group_by(Part.case_id)).all()
    )
    statement = select(Case).order_by(Case.needed_by, Case.id)
    if device_type:
        statement = statement.where(Case.device_type == device_type)
    if needed_by == "overdue":
        statement = statement.where(Case.needed_by < today)
    elif needed_by == "week":
        statement = statement.where(Case.needed_by >= today, Case.needed_by <= today + WEEK)
    elif needed_by == "later":
        statement = statement.where(Case.needed_by > today + WEEK)
    text = (query or "").strip()
    if text:
        serial_cases = select(BuildJob.case_id).where(BuildJob.serial.ilike(f"%{text}%"))
        statement = statement.where(or_(Case.code.ilike(f"%{text}%"), Case.id.in_(serial_cases)))
    rows = session.exec(statement.limit(limit)).all()
    holds = Holds(session, lab) if rows else None
    out = []
    for c in rows:
        flow = case_position(session, c, lab, holds)
        finished = flow.status in ("done", "stopped")
        if step:
            if step == "delivered" and flow.status != "done":
                continue
            if step == "stopped" and flow.status != "stopped":
                continue
            if step not in ("delivered", "stopped") and (finished or flow.step != step):
                continue
        if permissions is not None and not (
            flow.action is not None and flow.action.permission in permissions
        ):
            continue
        out.append(
            {
                "id": c.id,
                "code": c.code,
                "patient_code": c.patient_code,
                "device_type": c.device_type,
                "indication": c.indication,
                "needed_by": c.needed_by,
                "parts": counts.get(c.id, 0),
                "review_status": c.review_status,
                "material": c.material,
                "flow": flow,
                "state": flow.summary,
                "step": flow.step,
                "overdue": c.needed_by < today and not finished,
            }
        )
    return out


def case_detail(session: Session, case_id: int, lab=None) -> dict | None:
    """The case page: the order, where the case is (flow and step bar), each part with its
    warnings, sign-off state and devices (with hold reasons and release)."""
    case = session.get(Case, case_id)
    if case is None:
        return None
    names = dict(session.exec(select(User.id, User.full_name)).all())
    parts = session.exec(select(Part).where(Part.case_id == case_id).order_by(Part.id)).all()
    approvals = session.exec(select(Approval).where(Approval.case_id == case_id)).all()
    jobs = session.exec(
        select(BuildJob).where(BuildJob.case_id == case_id).order_by(BuildJob.id)
    ).all()
    holds = Holds(session, lab)
    flow = case_position(session, case, lab, holds)
    return {
        "case": case,
        "created_by": names.get(case.created_by, "?"),
        "flow": flow,
        "bar": bar(flow),
        "parts": [
            {
                "part": p,
                "uploaded_by": names.get(p.uploaded_by, "?"),
                "approvals": [a for a in approvals if a.part_id == p.id],
                "jobs": [j for j in jobs if j.part_id == p.id],
                "warnings": design_warnings(p.repair_report, p.analysis_after),
                "signoff_valid": gate.segmentation_step(session, p).valid,
                "holds": {j.id: holds.of(j) for j in jobs if j.part_id == p.id},
                "released": {
                    j.id: release_status(session, j).valid
                    for j in jobs
                    if j.part_id == p.id and j.outcome == "accepted"
                },
            }
            for p in parts
        ],
    }
