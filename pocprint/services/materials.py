"""Material lots: receiving, opening, loading onto a printer, and what they mean for dispatch.

A printer's loading history is append-only (`LotLoading`), so the lot a build used is the lot
loaded on its printer when the build started, and consumption per build is the slicer's
estimate (`BuildJob.filament_g`) charged to that lot. The fleet's dispatcher asks
`dispatch_blocks` for every printer it considers; any reason returned keeps jobs off it.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from sqlmodel import Session, select

from pocprint.domain.roles import Permission
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.services.maintenance import calibration_blocks
from pocprint.store.db import unit_of_work
from pocprint.store.models import LotLoading, MaterialLot, Printer, utcnow

# GS1 AI (10) allows up to 20 characters of a restricted set; a stricter subset keeps labels
# and scanners simple.
LOT_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9./-]{0,19}$")


def _text(value: str | None, what: str, limit: int) -> str:
    value = (value or "").strip()
    if not value:
        raise Invalid(f"{what} is required")
    if len(value) > limit:
        raise Invalid(f"{what} is longer than {limit} characters")
    return value


def receive_lot(
    lab: Lab,
    actor: Actor,
    *,
    material: str,
    manufacturer: str,
    lot_number: str,
    expiry: date | None,
    quantity_g: float | None,
    opened_on: date | None = None,
    note: str = "",
) -> int:
    """Record a lot as received (with its certificate's lot number and expiry)."""
    actor.require(Permission.MANAGE_MATERIALS)
    material = _text(material, "material", 64)
    manufacturer = _text(manufacturer, "manufacturer", 100)
    lot_number = (lot_number or "").strip()
    if not LOT_NUMBER.match(lot_number):
        raise Invalid(
            "lot number must be 1-20 letters, digits, dots, slashes or dashes "
            "(as printed on the supplier's label)"
        )
    if expiry is None:
        raise Invalid("expiry date is required")
    if quantity_g is None or not quantity_g > 0:
        raise Invalid("quantity (g) must be a positive number")
    today = utcnow().date()
    if opened_on is not None and opened_on > today:
        raise Invalid("opened date is in the future")
    with unit_of_work(lab.engine) as session:
        duplicate = session.exec(
            select(MaterialLot).where(
                MaterialLot.manufacturer == manufacturer,
                MaterialLot.lot_number == lot_number,
                MaterialLot.material == material,
            )
        ).first()
        if duplicate is not None:
            raise Invalid(f"lot {lot_number} of {manufacturer} {material} is already recorded")
        lot = MaterialLot(
            material=material,
            manufacturer=manufacturer,
            lot_number=lot_number,
            expiry=expiry,
            quantity_g=float(quantity_g),
            opened_on=opened_on,
            received_by=actor.user_id,
            note=(note or "").strip()[:1000],
        )
        session.add(lot)
        session.flush()
        audit.record(session, actor, "lot.received", "lot", lot.id, after=lot_facts(lot))
        return lot.id


def open_lot(lab: Lab, actor: Actor, lot_id: int, opened_on: date | None = None) -> None:
    actor.require(Permission.MANAGE_MATERIALS)
    opened_on = opened_on or utcnow().date()
    if opened_on > utcnow().date():
        raise Invalid("opened date is in the future")
    with unit_of_work(lab.engine) as session:
        lot = _lot(session, lot_id)
        if lot.opened_on is not None:
            raise WrongState(f"lot {lot.lot_number} was already opened on {lot.opened_on}")
        lot.opened_on = opened_on
        audit.record(
            session,
            actor,
            "lot.opened",
            "lot",
            lot.id,
            before={"opened_on": None},
            after={"opened_on": opened_on},
        )


def load_lot(lab: Lab, actor: Actor, printer_id: int, lot_id: int | None) -> None:
    """Put a lot on a printer (lot_id None: take the current one off)."""
    actor.require(Permission.MANAGE_MATERIALS)
    with unit_of_work(lab.engine) as session:
        printer = session.get(Printer, printer_id)
        if printer is None:
            raise NotFound(f"no printer {printer_id}")
        previous = current_lot(session, printer_id)
        lot = None
        if lot_id is not None:
            lot = _lot(session, lot_id)
            if lot.expiry < utcnow().date():
                raise Invalid(f"lot {lot.lot_number} expired on {lot.expiry}; it cannot be loaded")
            if lot.material.casefold() != printer.material.casefold():
                raise Invalid(
                    f"lot {lot.lot_number} is {lot.material}; {printer.name} is set up for "
                    f"{printer.material}"
                )
        elif previous is None:
            raise WrongState(f"{printer.name} has no lot loaded")
        session.add(LotLoading(printer_id=printer_id, lot_id=lot_id, loaded_by=actor.user_id))
        audit.record(
            session,
            actor,
            "lot.loaded" if lot else "lot.unloaded",
            "printer",
            printer.name,
            before={"lot": lot_facts(previous) if previous else None},
            after={"lot": lot_facts(lot) if lot else None},
        )


def _lot(session: Session, lot_id: int) -> MaterialLot:
    lot = session.get(MaterialLot, lot_id)
    if lot is None:
        raise NotFound(f"no material lot {lot_id}")
    return lot


def lot_facts(lot: MaterialLot) -> dict:
    return {
        "id": lot.id,
        "material": lot.material,
        "manufacturer": lot.manufacturer,
        "lot_number": lot.lot_number,
        "expiry": lot.expiry,
        "quantity_g": lot.quantity_g,
        "opened_on": lot.opened_on,
    }


def current_lot(
    session: Session, printer_id: int, at: datetime | None = None
) -> MaterialLot | None:
    """The lot on the printer at a moment (now by default), from its loading history."""
    query = select(LotLoading).where(LotLoading.printer_id == printer_id)
    if at is not None:
        query = query.where(LotLoading.loaded_at <= at)
    latest = session.exec(query.order_by(LotLoading.loaded_at.desc(), LotLoading.id.desc())).first()
    if latest is None or latest.lot_id is None:
        return None
    return session.get(MaterialLot, latest.lot_id)


def dispatch_blocks(session: Session, printer_id: int, material: str, now: datetime) -> list[str]:
    """Reasons from the material and maintenance records why this printer may not take a job.

    e.g. "material lot L123 expired on 2026-10-01", "no material lot loaded",
    "calibration logged as failed on ...". Empty list: no objection.
    """
    reasons = []
    lot = current_lot(session, printer_id)
    if lot is None:
        reasons.append("no material lot loaded on this printer")
    else:
        if lot.expiry < now.date():
            reasons.append(f"material lot {lot.lot_number} expired on {lot.expiry.isoformat()}")
        if material and lot.material.casefold() != material.casefold():
            reasons.append(
                f"loaded lot {lot.lot_number} is {lot.material}, the printer's material is {material}"
            )
    reasons.extend(calibration_blocks(session, printer_id, now))
    return reasons
