"""Printer maintenance and calibration log.

The latest calibration entry decides: a failed calibration, or one whose next due date has
passed, blocks the printer for clinical jobs until a passing calibration is logged. With no
calibration logged yet, the due date in the printer's definition file applies (the
dispatcher checks that one itself).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Session, select

from pocprint.domain.roles import Permission
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound
from pocprint.services.lab import Lab
from pocprint.store.db import unit_of_work
from pocprint.store.models import MaintenanceEntry, Printer, utcnow

CALIBRATION = "calibration"
MAINTENANCE = "maintenance"
RESULTS = {CALIBRATION: ("passed", "failed"), MAINTENANCE: ("done",)}


def record_entry(
    lab: Lab,
    actor: Actor,
    printer_id: int,
    *,
    kind: str,
    description: str,
    result: str,
    performed_at: datetime | None = None,
    next_due: date | None = None,
) -> int:
    actor.require(Permission.RECORD_MAINTENANCE)
    if kind not in RESULTS:
        raise Invalid("kind must be calibration or maintenance")
    if result not in RESULTS[kind]:
        raise Invalid(f"a {kind} result must be one of: {', '.join(RESULTS[kind])}")
    description = (description or "").strip()
    if not description:
        raise Invalid("say what was done (description)")
    if len(description) > 1000:
        raise Invalid("description is longer than 1000 characters")
    now = utcnow()
    performed_at = performed_at or now
    if performed_at.tzinfo is None:
        raise Invalid("performed_at needs a time zone (UTC)")
    if performed_at > now:
        raise Invalid("performed time is in the future")
    if kind == CALIBRATION and result == "passed":
        if next_due is None:
            raise Invalid("a passed calibration needs the date the next one is due")
        if next_due <= performed_at.date():
            raise Invalid("next calibration due date must be after the calibration")
    with unit_of_work(lab.engine) as session:
        printer = session.get(Printer, printer_id)
        if printer is None:
            raise NotFound(f"no printer {printer_id}")
        entry = MaintenanceEntry(
            printer_id=printer_id,
            kind=kind,
            description=description,
            result=result,
            performed_at=performed_at,
            next_due=next_due,
            recorded_by=actor.user_id,
        )
        session.add(entry)
        session.flush()
        audit.record(
            session,
            actor,
            f"printer.{kind}",
            "printer",
            printer.name,
            after={
                "entry": entry.id,
                "result": result,
                "description": description,
                "performed_at": performed_at,
                "next_due": next_due,
            },
        )
        return entry.id


def last_calibration(
    session: Session, printer_id: int, at: datetime | None = None
) -> MaintenanceEntry | None:
    query = select(MaintenanceEntry).where(
        MaintenanceEntry.printer_id == printer_id, MaintenanceEntry.kind == CALIBRATION
    )
    if at is not None:
        query = query.where(MaintenanceEntry.performed_at <= at)
    return session.exec(
        query.order_by(MaintenanceEntry.performed_at.desc(), MaintenanceEntry.id.desc())
    ).first()


def calibration_blocks(session: Session, printer_id: int, now: datetime) -> list[str]:
    entry = last_calibration(session, printer_id)
    if entry is None:
        return []
    if entry.result == "failed":
        return [f"calibration logged as failed on {entry.performed_at.date().isoformat()}"]
    if entry.next_due is not None and entry.next_due < now.date():
        return [f"calibration overdue since {entry.next_due.isoformat()}"]
    return []


def calibration_status(session: Session, printer: Printer, at: datetime) -> dict:
    """Calibration as it stood at a moment (e.g. a build's start), for the device record."""
    entry = last_calibration(session, printer.id, at)
    if entry is None:
        due = printer.calibration_due
        state = "not logged" if due is None else ("overdue" if due < at.date() else "current")
        return {"state": state, "source": "printer definition", "next_due": due, "last": None}
    if entry.result == "failed":
        state = "failed"
    elif entry.next_due is not None and entry.next_due < at.date():
        state = "overdue"
    else:
        state = "current"
    return {
        "state": state,
        "source": "maintenance log",
        "next_due": entry.next_due,
        "last": {
            "id": entry.id,
            "performed_at": entry.performed_at,
            "result": entry.result,
            "description": entry.description,
        },
    }
