"""Material lots, what is loaded where, and the maintenance log, for the materials page."""

from __future__ import annotations

from sqlmodel import Session, select

from pocprint.reads.auditor import lots_at_build
from pocprint.services.maintenance import calibration_status
from pocprint.services.materials import current_lot
from pocprint.store.models import BuildJob, MaintenanceEntry, MaterialLot, Printer, User, utcnow


def lots(session: Session) -> list[dict]:
    """Every lot with what the builds printed from it used (slicer estimates)."""
    jobs = session.exec(select(BuildJob).where(BuildJob.printer_id.is_not(None))).all()
    by_id = {j.id: j for j in jobs}
    used: dict[int, float] = {}
    builds: dict[int, int] = {}
    for job_id, lot in lots_at_build(session, jobs).items():
        if lot is None:
            continue
        job = by_id[job_id]
        used[lot.id] = used.get(lot.id, 0.0) + (job.filament_g or 0.0)
        builds[lot.id] = builds.get(lot.id, 0) + 1
    today = utcnow().date()
    out = []
    for lot in session.exec(select(MaterialLot).order_by(MaterialLot.expiry)).all():
        out.append(
            {
                "id": lot.id,
                "material": lot.material,
                "manufacturer": lot.manufacturer,
                "lot_number": lot.lot_number,
                "expiry": lot.expiry,
                "expired": lot.expiry < today,
                "quantity_g": lot.quantity_g,
                "used_g": round(used.get(lot.id, 0.0), 1),
                "remaining_g": round(lot.quantity_g - used.get(lot.id, 0.0), 1),
                "builds": builds.get(lot.id, 0),
                "opened_on": lot.opened_on,
                "received_at": lot.received_at,
            }
        )
    return out


def printers(session: Session) -> list[dict]:
    now = utcnow()
    users = {u.id: u.full_name for u in session.exec(select(User)).all()}
    out = []
    for p in session.exec(select(Printer).where(Printer.enabled).order_by(Printer.name)).all():
        lot = current_lot(session, p.id)
        log = session.exec(
            select(MaintenanceEntry)
            .where(MaintenanceEntry.printer_id == p.id)
            .order_by(MaintenanceEntry.performed_at.desc(), MaintenanceEntry.id.desc())
            .limit(10)
        ).all()
        out.append(
            {
                "id": p.id,
                "name": p.name,
                "serial": p.serial,
                "material": p.material,
                "lot": lot,
                "calibration": calibration_status(session, p, now),
                "log": [
                    {
                        "kind": e.kind,
                        "result": e.result,
                        "description": e.description,
                        "performed_at": e.performed_at,
                        "next_due": e.next_due,
                        "by": users.get(e.recorded_by, "?"),
                    }
                    for e in log
                ],
            }
        )
    return out
