"""Per-case export of the ACR-RSNA 3D Printing Registry fields (DOMAIN.md section 3).

Field names follow the registry's published sections; they are unconfirmed until the lab
has the official data dictionary, so every export says so. Nothing identifying leaves:
no patient code, no accession number, no names.

Effort (4 activities x 2 staff types x hours/minutes/unknown) comes from the workflow's own
timestamps: the elapsed time between the events that open and close each activity, given to
the staff type of the people who acted in it. Elapsed time is an upper bound of work time;
an activity with no timestamps (consultation happens outside pocprint) is "unknown".
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from pocprint.domain.roles import Role, parse_roles
from pocprint.reads.outcomes import clinical_outcomes
from pocprint.services.audit import plain
from pocprint.store.models import (
    AuditEvent,
    BuildJob,
    Case,
    Part,
    PostProcessStep,
    Printer,
    QaMeasurement,
    User,
)

CLINICIAN_ROLES = frozenset({Role.RADIOLOGIST, Role.PRESCRIBER})
ACTIVITIES = ("consultation", "segmentation", "cad", "prep_post_processing")
NOTE = (
    "Field names follow the registry sections in DOMAIN.md and are unconfirmed until the "
    "official data dictionary is obtained. Effort is elapsed time between workflow "
    "timestamps (an upper bound of hands-on time); 'unknown' where pocprint holds none."
)


def _staff_type(user: User | None) -> str:
    if user is None:
        return "non_clinician"
    try:
        roles = parse_roles(user.roles)
    except ValueError:
        roles = frozenset()
    return "clinician" if roles & CLINICIAN_ROLES else "non_clinician"


def _span(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds()


def _effort_cell(seconds: float | None) -> dict:
    if seconds is None:
        return {"hours": None, "minutes": None, "unknown": True}
    minutes = round(seconds / 60)
    return {"hours": minutes // 60, "minutes": minutes % 60, "unknown": False}


def registry_export(session: Session, case_id: int) -> dict | None:
    case = session.get(Case, case_id)
    if case is None:
        return None
    parts = session.exec(select(Part).where(Part.case_id == case.id).order_by(Part.id)).all()
    jobs = session.exec(
        select(BuildJob).where(BuildJob.case_id == case.id).order_by(BuildJob.id)
    ).all()
    users = {u.username: u for u in session.exec(select(User)).all()}
    events = session.exec(
        select(AuditEvent)
        .where(
            ((AuditEvent.entity == "case") & (AuditEvent.entity_id == case.code))
            | ((AuditEvent.entity == "part") & AuditEvent.entity_id.in_([str(p.id) for p in parts]))
            | (
                AuditEvent.entity.in_(["job", "device"])
                & AuditEvent.entity_id.in_([j.serial for j in jobs])
            )
        )
        .order_by(AuditEvent.id)
    ).all()

    def first(*actions) -> AuditEvent | None:
        return next((e for e in events if e.action in actions), None)

    def last(*actions) -> AuditEvent | None:
        return next((e for e in reversed(events) if e.action in actions), None)

    def actors(*actions) -> set[str]:
        return {_staff_type(users.get(e.actor)) for e in events if e.action in actions}

    created = first("case.created")
    uploaded = first("part.uploaded")
    approved = last("design.approved")
    post_times = [
        t
        for job in jobs
        for t in session.exec(
            select(PostProcessStep.performed_at).where(PostProcessStep.build_job_id == job.id)
        ).all()
        + session.exec(
            select(QaMeasurement.measured_at).where(QaMeasurement.build_job_id == job.id)
        ).all()
    ]
    sliced = [j.sliced_at for j in jobs if j.sliced_at]
    finished = [j.finished_at for j in jobs if j.finished_at]

    spans = {
        "consultation": (None, set()),
        # From the order to the first mesh: segmentation happens outside pocprint, before the
        # upload, by whoever uploads it.
        "segmentation": (
            _span(created.at if created else None, uploaded.at if uploaded else None),
            actors("part.uploaded"),
        ),
        # Mesh repair and design, up to the design approval.
        "cad": (
            _span(uploaded.at if uploaded else None, approved.at if approved else None),
            actors("part.uploaded", "part.repair_accepted", "part.units_confirmed"),
        ),
        # Build preparation (approval to G-code) plus post-processing and QA after the print.
        "prep_post_processing": (
            _sum(
                _span(approved.at if approved else None, min(sliced) if sliced else None),
                _span(min(finished) if finished else None, max(post_times) if post_times else None),
            ),
            actors("post.step", "qa.measured", "printer.plate_clear", "job.outcome")
            or {"non_clinician"},
        ),
    }
    effort = {}
    for activity in ACTIVITIES:
        seconds, staff = spans[activity]
        effort[activity] = {
            staff_type: _effort_cell(seconds if staff_type in staff else None)
            for staff_type in ("clinician", "non_clinician")
        }
        if seconds is not None and len(staff) == 2:  # shared: split the elapsed time evenly
            effort[activity] = {k: _effort_cell(seconds / 2) for k in effort[activity]}

    printers = {p.id: p for p in session.exec(select(Printer)).all()}
    prints: dict[tuple, dict] = {}
    for job in jobs:
        if job.printer_id is None:
            continue
        printer = printers[job.printer_id]
        key = (job.part_id, printer.id, 1.0, job.material or printer.material)
        entry = prints.setdefault(
            key,
            {
                "parts": [p.label for p in parts if p.id == job.part_id],
                "printer_label": printer.name,
                "printer_maker_model": printer.model,
                "technology": printer.technology,
                "material": job.material or printer.material,
                "scale": 1.0,
                "copies": 0,
            },
        )
        entry["copies"] += 1
    return plain(
        {
            "schema": "pocprint.acr-rsna-registry/1",
            "note": NOTE,
            "case": case.code,
            "imaging_and_indication": {
                "indication": case.indication,
                "icd10_code": case.icd10_code,
                "modality": case.modality,
                "slice_thickness_mm": case.slice_thickness_mm,
            },
            "digital_model": {
                "model_or_guide": "guide" if case.device_type == "surgical_guide" else "model",
                "intended_use": case.intended_use,
                "diagnostic_use": case.diagnostic_use,
                "method": " ".join(
                    x for x in (case.segmentation_software, case.segmentation_version) if x
                )
                or None,
                "anatomic_parts": (case.anatomy or [])[:20],
            },
            "physical_models": list(prints.values())[:5],
            "procedure": {"procedure_date": case.procedure_date},
            # The requesting clinician's outcome per device (issue 12), latest answer each.
            "clinical_impact": clinical_outcomes(session, case.id),
            "effort": effort,
        }
    )


def _sum(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def registry_rows(export: dict) -> list[dict]:
    """The export flattened to (field, value) rows for a CSV file."""
    rows = []

    def walk(prefix: str, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, v in enumerate(value, 1):
                walk(f"{prefix}[{i}]", v)
        else:
            rows.append({"field": prefix, "value": value})

    walk("", export)
    return rows
