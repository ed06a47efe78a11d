"""The device record: everything that made one device, as one JSON-ready document."""

from __future__ import annotations

from sqlmodel import Session, or_, select

from pocprint.services.audit import plain
from pocprint.store.models import Approval, AuditEvent, BuildJob, Case, Part, Printer, User, utcnow

SCHEMA = "pocprint.device-record/1"


def device_record(session: Session, serial: str) -> dict | None:
    job = session.exec(select(BuildJob).where(BuildJob.serial == serial)).first()
    if job is None:
        return None
    case = session.get(Case, job.case_id)
    part = session.get(Part, job.part_id)
    approval = session.get(Approval, job.approval_id)
    printer = session.get(Printer, job.printer_id) if job.printer_id else None
    users = {u.id: u for u in session.exec(select(User)).all()}
    names = {u.username: u.full_name for u in users.values()}

    def who(user_id):
        user = users.get(user_id)
        return {"username": user.username, "name": user.full_name} if user else None

    events = session.exec(
        select(AuditEvent)
        .where(
            or_(
                (AuditEvent.entity == "case") & (AuditEvent.entity_id == case.code),
                (AuditEvent.entity == "part") & (AuditEvent.entity_id == str(part.id)),
                (AuditEvent.entity == "job") & (AuditEvent.entity_id == job.serial),
            )
        )
        .order_by(AuditEvent.id)
    ).all()
    record = {
        "schema": SCHEMA,
        "generated_at": utcnow(),
        "device": {
            "serial": job.serial,
            "job_id": job.id,
            "device_type": case.device_type,
            "state": job.state,
            "outcome": job.outcome,
            "outcome_note": job.outcome_note,
            "outcome_by": who(job.outcome_by),
            "outcome_at": job.outcome_at,
        },
        "case": {
            "code": case.code,
            "patient_code": case.patient_code,
            "indication": case.indication,
            "needed_by": case.needed_by,
            "created_at": case.created_at,
            "created_by": who(case.created_by),
        },
        "files": {
            "source": {
                "sha256": part.source_sha256,
                "bytes": part.source_bytes,
                "format": part.fmt,
            },
            "repaired_mesh": {"sha256": part.repaired_sha256},
            "gcode": {"sha256": job.gcode_sha256, "sha1": job.gcode_sha1, "bytes": job.gcode_bytes},
        },
        "repair": {
            "verdict": part.verdict,
            "before": part.analysis_before,
            "after": part.analysis_after,
            "report": part.repair_report,
            "units": {
                "unit": part.units,
                "scale_to_mm": part.scale_to_mm,
                "confirmed_by": who(part.units_decided_by),
                "guess": part.units_guess,
            },
            "acceptance": (
                {
                    "accepted_by": who(part.accepted_by),
                    "reason": part.accepted_reason,
                    "accepted_at": part.accepted_at,
                }
                if part.accepted_by
                else None
            ),
            "label": part.label,
            "uploaded_by": who(part.uploaded_by),
            "uploaded_at": part.uploaded_at,
            "processed_at": part.processed_at,
        },
        "design_approval": {
            "signer": approval.signer_name,
            "username": who(approval.user_id)["username"] if who(approval.user_id) else None,
            "meaning": approval.meaning,
            "signed_at": approval.signed_at,
            "content_sha256": approval.content_sha256,
            "comment": approval.comment,
        },
        "slicing": {
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
        },
        "printer": (
            {
                "name": printer.name,
                "serial": printer.serial,
                "model": printer.model,
                "connector": printer.connector,
                "technology": printer.technology,
                "material": printer.material,
                "calibration_due": printer.calibration_due,
            }
            if printer
            else None
        ),
        "print": {
            "remote_file": job.remote_name,
            "printer_sha1": job.printer_sha1,
            "plate_clear_confirmed_by": who(job.dispatched_by_plate_clear),
            "dispatched_at": job.dispatched_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "printer_report": job.printer_report,
            "error": job.error,
            "cancel_reason": job.cancel_reason,
        },
        "events": [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "actor_name": names.get(e.actor, e.actor),
                "action": e.action,
                "entity": e.entity,
                "entity_id": e.entity_id,
                "before": e.before,
                "after": e.after,
                "reason": e.reason,
                "hash": e.hash,
            }
            for e in events
        ],
    }
    return plain(record)
