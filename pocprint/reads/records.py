"""The device history record: everything that made one device, as one JSON-ready document.

Assembled from the database only (tables and the audit trail), one section per function; a
new fact goes into the section that owns it (order fields are copied from the case row as
they are, so a column added to `Case` appears here without a change). Exports (PDF, the
Annex XIII statement, labels) are made from this document in `pocprint/trace/`.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, or_, select

from pocprint.domain.verification import print_verification
from pocprint.services.audit import plain
from pocprint.services.maintenance import calibration_status
from pocprint.services.materials import current_lot, lot_facts
from pocprint.services.postprocessing import catalogue
from pocprint.services.release import RELEASED, release_status
from pocprint.store.models import (
    Approval,
    AuditEvent,
    BuildJob,
    Case,
    Delivery,
    OutboxMessage,
    Part,
    PostProcessStep,
    Printer,
    QaDisposition,
    QaMeasurement,
    Signature,
    User,
    utcnow,
)

SCHEMA = "pocprint.device-record/2"
# Case columns that never leave the case record (encrypted identity) or mean nothing outside.
ORDER_EXCLUDED = frozenset({"id", "patient_identifiers", "created_by", "accession_hmac"})
# The order section lists these first, in this order; any other Case column follows.
ORDER_FIRST = (
    "code",
    "patient_code",
    "device_type",
    "indication",
    "icd10_code",
    "intended_use",
    "diagnostic_use",
    "anatomy",
    "ordering_clinician",
    "ordering_contact",
    "needed_by",
    "procedure_date",
    "regulatory_route",
    "prescriber_name",
    "prescriber_qualification",
    "design_characteristics",
    "modality",
    "slice_thickness_mm",
    "accession_number",
    "segmentation_software",
    "segmentation_version",
    "review_status",
    "created_at",
)
# Which event actions name the operator of which step (first match wins; later repeat).
STEP_ACTIONS = {
    "order": ("case.created",),
    "upload": ("part.uploaded",),
    "units": ("part.units_confirmed",),
    "repair acceptance": ("part.repair_accepted",),
    "design approval": ("design.approved",),
    "dispatch": ("job.dispatching",),
    "print outcome": ("job.outcome",),
    "post-processing": ("post.step",),
    "QA": ("qa.measured",),
    "release": ("signature.signed",),
    "delivery": ("device.delivered",),
}


class _Context:
    """Rows shared by the sections, loaded once."""

    def __init__(self, session: Session, job: BuildJob):
        self.session = session
        self.job = job
        self.case = session.get(Case, job.case_id)
        self.part = session.get(Part, job.part_id)
        self.approval = session.get(Approval, job.approval_id)
        self.printer = session.get(Printer, job.printer_id) if job.printer_id else None
        users = session.exec(select(User)).all()
        self.users = {u.id: u for u in users}
        self.names = {u.username: u.full_name for u in users}
        self.build_time: datetime | None = job.started_at or job.dispatched_at
        self.events = self._events()

    def who(self, user_id):
        user = self.users.get(user_id)
        return {"username": user.username, "name": user.full_name} if user else None

    def _events(self) -> list[AuditEvent]:
        job, case, part = self.job, self.case, self.part
        subjects = [
            (AuditEvent.entity == "case") & (AuditEvent.entity_id.in_([case.code, str(case.id)])),
            (AuditEvent.entity == "part") & (AuditEvent.entity_id == str(part.id)),
            (AuditEvent.entity.in_(["job", "device"])) & (AuditEvent.entity_id == job.serial),
        ]
        if self.printer is not None and job.dispatched_at is not None:
            # The printer's own events while this build was on it (start, pauses, end).
            until = job.finished_at or utcnow()
            subjects.append(
                (AuditEvent.entity == "printer")
                & (AuditEvent.entity_id == self.printer.name)
                & (AuditEvent.at >= job.dispatched_at)
                & (AuditEvent.at <= until)
            )
        return self.session.exec(
            select(AuditEvent).where(or_(*subjects)).order_by(AuditEvent.id)
        ).all()


def _identity(c: _Context) -> dict:
    job, case, part, approval = c.job, c.case, c.part, c.approval
    return {
        "serial": job.serial,
        "job_id": job.id,
        "case": case.code,
        "patient_code": case.patient_code,
        "device_type": case.device_type,
        "part": part.label,
        "design_version": design_version(approval, job),
        "state": job.state,
        "outcome": job.outcome,
        "outcome_note": job.outcome_note,
        "outcome_by": c.who(job.outcome_by),
        "outcome_at": job.outcome_at,
    }


def design_version(approval: Approval | None, job: BuildJob) -> str:
    """Approval number and the start of the approved mesh's hash: short enough for a label,
    and a new approval or a changed mesh always gives a new version."""
    number = approval.id if approval else 0
    return f"A{number}-{job.mesh_sha256[:8]}"


def _order(c: _Context) -> dict:
    fields = c.case.model_dump()
    keys = [k for k in ORDER_FIRST if k in fields] + sorted(set(fields) - set(ORDER_FIRST))
    out = {k: fields[k] for k in keys if k not in ORDER_EXCLUDED}
    # The accession number leads to the patient in the RIS: the record says only that there
    # is one (kept encrypted with the identifiers, shown on request to those allowed).
    out["accession_number"] = "stored encrypted" if c.case.accession_hmac else None
    out["created_by"] = c.who(c.case.created_by)
    return out


def _signatures(c: _Context) -> list[dict]:
    job, case, part = c.job, c.case, c.part
    rows = c.session.exec(
        select(Signature)
        .where(
            or_(
                (Signature.entity == "case") & Signature.entity_id.in_([case.code, str(case.id)]),
                (Signature.entity == "part") & (Signature.entity_id == str(part.id)),
                Signature.entity.in_(["job", "device"]) & (Signature.entity_id == job.serial),
            )
        )
        .order_by(Signature.id)
    ).all()
    withdrawn = {s.withdraws_id for s in rows if s.withdraws_id}
    return [
        {
            "id": s.id,
            "meaning": s.meaning,
            "signer": s.signer_name,
            "username": (c.who(s.user_id) or {}).get("username"),
            "signed_at": s.signed_at,
            "entity": s.entity,
            "entity_id": s.entity_id,
            "content_sha256": s.content_sha256,
            "comment": s.comment,
            "withdraws": s.withdraws_id,
            "withdrawn": s.id in withdrawn,
        }
        for s in rows
    ]


def _files(c: _Context) -> dict:
    part, job = c.part, c.job
    return {
        "source": {"sha256": part.source_sha256, "bytes": part.source_bytes, "format": part.fmt},
        "repaired_mesh": {"sha256": part.repaired_sha256},
        "gcode": {"sha256": job.gcode_sha256, "sha1": job.gcode_sha1, "bytes": job.gcode_bytes},
    }


def _repair(c: _Context) -> dict:
    part = c.part
    return {
        "verdict": part.verdict,
        "before": part.analysis_before,
        "after": part.analysis_after,
        "report": part.repair_report,
        "fidelity": (part.repair_report or {}).get("fidelity"),
        "units": {
            "unit": part.units,
            "scale_to_mm": part.scale_to_mm,
            "confirmed_by": c.who(part.units_decided_by),
            "guess": part.units_guess,
        },
        "acceptance": (
            {
                "accepted_by": c.who(part.accepted_by),
                "reason": part.accepted_reason,
                "accepted_at": part.accepted_at,
            }
            if part.accepted_by
            else None
        ),
        "label": part.label,
        "uploaded_by": c.who(part.uploaded_by),
        "uploaded_at": part.uploaded_at,
        "processed_at": part.processed_at,
    }


def _design_approval(c: _Context) -> dict | None:
    a = c.approval
    if a is None:
        return None
    return {
        "signer": a.signer_name,
        "username": (c.who(a.user_id) or {}).get("username"),
        "meaning": a.meaning,
        "signed_at": a.signed_at,
        "content_sha256": a.content_sha256,
        "comment": a.comment,
    }


def _slicing(c: _Context) -> dict:
    job = c.job
    return {
        "slicer": job.slicer_name,
        "version": job.slicer_version,
        "profile": job.profile_id,
        "profile_sha256": job.profile_sha256,
        "estimated_time_s": job.estimated_time_s,
        "filament_mm": job.filament_mm,
        "filament_cm3": job.filament_cm3,
        "filament_g": job.filament_g,
        "placed_extents_mm": job.extents,
        "sliced_at": job.sliced_at,
        "effective_config": job.slicer_config,
    }


def _printer(c: _Context) -> dict | None:
    p = c.printer
    if p is None:
        return None
    at = c.build_time or utcnow()
    return {
        "name": p.name,
        "serial": p.serial,
        "model": p.model,
        "connector": p.connector,
        "technology": p.technology,
        "material": p.material,
        "calibration_due": p.calibration_due,
        "calibration_at_build": calibration_status(c.session, p, at),
    }


def _material(c: _Context) -> dict:
    lot = None
    if c.printer is not None and c.build_time is not None:
        loaded = current_lot(c.session, c.printer.id, c.build_time)
        lot = lot_facts(loaded) if loaded else None
    material = c.job.material or (lot or {}).get("material") or (c.printer and c.printer.material)
    return {"material": material, "lot": lot, "consumed_g": c.job.filament_g}


def _print(c: _Context) -> dict:
    job = c.job
    return {
        "remote_file": job.remote_name,
        "printer_sha1": job.printer_sha1,
        "verification": print_verification(job.printer_sha1, job.printer_report),
        "plate_clear_confirmed_by": c.who(job.dispatched_by_plate_clear),
        "dispatched_at": job.dispatched_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "printer_report": job.printer_report,
        "error": job.error,
        "cancel_reason": job.cancel_reason,
        "printer_events": [
            {"at": e.at, "action": e.action, "actor": e.actor, "after": e.after}
            for e in c.events
            if e.entity == "printer"
        ],
    }


def _post_processing(c: _Context) -> dict:
    checklist = catalogue().get(c.case.device_type)
    titles = {s.key: s.title for s in checklist.steps} if checklist else {}
    steps = c.session.exec(
        select(PostProcessStep)
        .where(PostProcessStep.build_job_id == c.job.id)
        .order_by(PostProcessStep.performed_at, PostProcessStep.id)
    ).all()
    return {
        "checklist": [s.key for s in checklist.steps] if checklist else [],
        "sterile": checklist.sterile if checklist else None,
        "status_text": checklist.status_text if checklist else "",
        "steps": [
            {
                "step": s.step,
                "title": titles.get(s.step, s.step),
                "parameters": s.parameters,
                "note": s.note,
                "operator": c.who(s.operator_id),
                "performed_at": s.performed_at,
            }
            for s in steps
        ],
    }


def _qa(c: _Context) -> dict:
    rows = c.session.exec(
        select(QaMeasurement)
        .where(QaMeasurement.build_job_id == c.job.id)
        .order_by(QaMeasurement.measured_at, QaMeasurement.id)
    ).all()
    disposition = c.session.exec(
        select(QaDisposition).where(QaDisposition.build_job_id == c.job.id)
    ).first()
    latest: dict[str, bool] = {}
    for m in rows:
        latest[m.feature] = m.passed
    reprint = c.session.get(BuildJob, disposition.reprint_job_id) if disposition else None
    return {
        "measurements": [
            {
                "feature": m.feature,
                "designed_mm": m.designed_mm,
                "measured_mm": m.measured_mm,
                "deviation_mm": round(m.measured_mm - m.designed_mm, 4),
                "tolerance_mm": m.tolerance_mm,
                "passed": m.passed,
                "photo_sha256": m.photo_sha256,
                "measured_by": c.who(m.measured_by),
                "measured_at": m.measured_at,
            }
            for m in rows
        ],
        "passed": bool(latest) and all(latest.values()),
        "disposition": (
            {
                "decision": disposition.decision,
                "reason": disposition.reason,
                "reprint": reprint.serial if reprint else None,
                "decided_by": c.who(disposition.decided_by),
                "decided_at": disposition.decided_at,
            }
            if disposition
            else None
        ),
    }


def _release(c: _Context) -> dict | None:
    """The release signature, judged against what the record holds now (void if it changed)."""
    status = release_status(c.session, c.job)
    if status.signature is None:
        return None
    s = status.signature
    return {
        "id": s.id,
        "meaning": s.meaning,
        "signer": s.signer_name,
        "username": (c.who(s.user_id) or {}).get("username"),
        "signed_at": s.signed_at,
        "content_sha256": s.content_sha256,
        "comment": s.comment,
        "state": status.state,
    }


def _delivery(c: _Context) -> dict | None:
    d = c.session.exec(select(Delivery).where(Delivery.build_job_id == c.job.id)).first()
    if d is None:
        return None
    return {
        "delivered_to": d.delivered_to,
        "location": d.location,
        "delivered_at": d.delivered_at,
        "recorded_by": c.who(d.recorded_by),
        "note": d.note,
    }


def _pacs_archive(c: _Context) -> dict:
    """The model archived into the imaging study (Encapsulated STL, by C-STORE), or why not."""
    message = c.session.exec(
        select(OutboxMessage)
        .where(OutboxMessage.channel == "dicom", OutboxMessage.subject == c.job.serial)
        .order_by(OutboxMessage.id.desc())
    ).first()
    if message is None:
        return {
            "state": "not archived",
            "why": "the order names no PACS study"
            if not c.case.study_instance_uid
            else "archived on release",
        }
    payload, result = message.payload or {}, message.result or {}
    return {
        "state": message.state,
        "pacs": result.get("pacs") or message.destination,
        "sop_class_uid": payload.get("sop_class_uid"),
        "sop_instance_uid": payload.get("sop_instance_uid"),
        "series_uid": payload.get("series_uid"),
        "study_uid": payload.get("study_uid"),
        "source_series_uid": payload.get("source_series_uid"),
        "source_images": result.get("source_images"),
        "document_sha256": payload.get("mesh_sha256"),
        "stored_at": message.sent_at,
        "attempts": message.attempts,
        "last_error": message.last_error,
        "next_attempt_at": message.next_attempt_at if message.state == "pending" else None,
        "note": result.get("note"),
    }


def _operators(c: _Context) -> dict:
    """Who did each step, from the audit trail (several names where a step was repeated)."""
    out: dict[str, list[str]] = {}
    for step, actions in STEP_ACTIONS.items():
        names = []
        for e in c.events:
            if e.action in actions:
                if step == "release" and (e.after or {}).get("meaning") != RELEASED:
                    continue
                name = c.names.get(e.actor, e.actor)
                if name not in names:
                    names.append(name)
        if names:
            out[step] = names
    # The plate-clear confirmation is a printer event before the dispatch; the job keeps who.
    cleared = c.who(c.job.dispatched_by_plate_clear)
    if cleared:
        out["plate clear"] = [cleared["name"]]
    return out


def _events(c: _Context) -> list[dict]:
    return [
        {
            "id": e.id,
            "at": e.at,
            "actor": e.actor,
            "actor_name": c.names.get(e.actor, e.actor),
            "action": e.action,
            "entity": e.entity,
            "entity_id": e.entity_id,
            "before": e.before,
            "after": e.after,
            "reason": e.reason,
            "hash": e.hash,
        }
        for e in c.events
    ]


def device_record(session: Session, serial: str) -> dict | None:
    job = session.exec(select(BuildJob).where(BuildJob.serial == serial)).first()
    if job is None:
        return None
    c = _Context(session, job)
    signatures = _signatures(c)
    qa = _qa(c)
    release = _release(c)
    record = {
        "schema": SCHEMA,
        "generated_at": utcnow(),
        "device": _identity(c),
        "case": {
            "code": c.case.code,
            "patient_code": c.case.patient_code,
            "indication": c.case.indication,
            "needed_by": c.case.needed_by,
            "created_at": c.case.created_at,
            "created_by": c.who(c.case.created_by),
        },
        "order": _order(c),
        "signatures": signatures,
        "files": _files(c),
        "repair": _repair(c),
        "design_approval": _design_approval(c),
        "slicing": _slicing(c),
        "printer": _printer(c),
        "material": _material(c),
        "print": _print(c),
        "post_processing": _post_processing(c),
        "qa": qa,
        "release": release,
        "delivery": _delivery(c),
        "pacs_archive": _pacs_archive(c),
        "quantities": {
            "built": 1 if job.finished_at and job.state in ("printed", "completed") else 0,
            "accepted": 1 if job.outcome == "accepted" and qa["passed"] else 0,
            "released": 1 if release and release["state"] == "valid" else 0,
        },
        "operators": _operators(c),
        "events": _events(c),
    }
    return plain(record)


def serial_of_job(session: Session, job_id: int) -> str | None:
    job = session.get(BuildJob, job_id)
    return job.serial if job else None
