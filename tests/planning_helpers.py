"""A past the lab has lived: released devices whose every milestone is set to a known time.

The rows are what the real services leave (a case, its approved review, a repaired part, a
design approval, a sliced and printed build job, the lab manager's release signature); they
are written directly so a test can state the exact history the forecast must learn from.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from sqlmodel import select

from pocprint.store.db import unit_of_work
from pocprint.store.models import (
    AppropriatenessReview,
    Approval,
    BuildJob,
    Case,
    Part,
    Printer,
    Signature,
    utcnow,
)

_numbers = itertools.count(1)

# Hours after the order at which each milestone happens, as shares of the lead time.
SHARES = {
    "reviewed": 0.1,
    "repaired": 0.2,
    "approved": 0.3,
    "sliced": 0.35,
    "started": 0.5,
    "finished": 0.8,
    "released": 1.0,
}


def past_device(
    lab,
    user_id: int,
    *,
    device_type: str,
    lead_h: float,
    ordered_at=None,
    printer: str | None = None,
    estimate_h: float | None = None,
    needed_by: date | None = None,
    stop_after: str | None = None,
    material: str = "PLA",
) -> dict:
    """One device whose case took `lead_h` hours from order to release (milestones at SHARES
    of it); `stop_after` leaves it in progress after that milestone. Returns its ids."""
    n = next(_numbers)
    ordered = ordered_at or utcnow() - timedelta(days=30)
    at = {name: ordered + timedelta(hours=lead_h * share) for name, share in SHARES.items()}
    if stop_after is not None:
        names = list(SHARES)
        for name in names[names.index(stop_after) + 1 :] if stop_after != "ordered" else names:
            at[name] = None
    with unit_of_work(lab.engine) as s:
        printer_row = None
        if printer is not None:
            printer_row = s.exec(select(Printer).where(Printer.name == printer)).first()
        case = Case(
            code=f"H-{n:05d}-{device_type[:2]}",
            patient_code=f"PX-{n:05d}",
            indication="Past case for the lead-time history",
            device_type=device_type,
            needed_by=needed_by or (ordered + timedelta(days=10)).date(),
            created_by=user_id,
            created_at=ordered,
            material=material,
            review_status="approved" if at["reviewed"] else "awaiting_review",
        )
        s.add(case)
        s.flush()
        if at["reviewed"]:
            s.add(
                AppropriatenessReview(
                    case_id=case.id,
                    decision="approve",
                    reviewer_id=user_id,
                    created_at=at["reviewed"],
                )
            )
        out = {"case_id": case.id, "code": case.code}
        if at["repaired"] is None:
            return out
        part = Part(
            case_id=case.id,
            label="part",
            fmt="stl",
            source_sha256=f"{n:064d}",
            source_bytes=100,
            state="approved" if at["approved"] else "processed",
            verdict="repaired",
            uploaded_by=user_id,
            uploaded_at=ordered,
            processed_at=at["repaired"],
        )
        s.add(part)
        s.flush()
        out["part_id"] = part.id
        if at["approved"] is None:
            return out
        approval = Approval(
            case_id=case.id,
            part_id=part.id,
            user_id=user_id,
            signer_name="Past Approver",
            meaning="approved design",
            content_sha256=f"{n:064d}",
            signed_at=at["approved"],
        )
        s.add(approval)
        s.flush()
        estimate = estimate_h if estimate_h is not None else lead_h * 0.3
        state = "completed" if at["finished"] else "printing" if at["started"] else "ready"
        if at["sliced"] is None:
            state = "slice_queued"
        job = BuildJob(
            serial=f"PD-{n:06d}",
            case_id=case.id,
            part_id=part.id,
            approval_id=approval.id,
            profile_id="generic-fff-250x210_pla",
            state=state,
            outcome="accepted" if at["finished"] else None,
            mesh_sha256=f"{n:064d}",
            estimated_time_s=int(estimate * 3600),
            sliced_at=at["sliced"],
            started_at=at["started"],
            finished_at=at["finished"],
            printer_id=printer_row.id if printer_row is not None else None,
            material=material,
            created_at=at["approved"],
        )
        s.add(job)
        s.flush()
        out.update(job_id=job.id, serial=job.serial)
        if at["released"] is not None:
            s.add(
                Signature(
                    user_id=user_id,
                    signer_name="Past Manager",
                    meaning="released device",
                    entity="device",
                    entity_id=job.serial,
                    content_sha256=f"{n:064d}",
                    signed_at=at["released"],
                )
            )
    return out


def late_case_queue(lab, user_id: int, printer: str) -> tuple[dict, dict]:
    """Five released guides on `printer` (print 30 % of a 40 h lead), then two sliced guides
    waiting: one needed tomorrow with 20 h of printing (late), one in a month (calm)."""
    for _ in range(5):
        past_device(lab, user_id, device_type="surgical_guide", lead_h=40, printer=printer)
    waiting = [
        past_device(
            lab,
            user_id,
            device_type="surgical_guide",
            lead_h=40,
            stop_after="sliced",
            ordered_at=utcnow() - timedelta(hours=hours_ago),
            needed_by=date.today() + timedelta(days=days),
            estimate_h=estimate_h,
        )
        for hours_ago, days, estimate_h in ((2, 1, 20), (1, 30, 3))
    ]
    return waiting[0], waiting[1]
