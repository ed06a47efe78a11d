"""Registering the printers defined in `printers/` (the files are the source of truth)."""

from __future__ import annotations

from sqlmodel import select

from pocprint.connectors.manual import MANUAL_DETAIL
from pocprint.domain.states import PrinterState
from pocprint.services import audit
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.services.transitions import move
from pocprint.store.db import unit_of_work
from pocprint.store.models import Printer


def sync_printers(lab: Lab) -> list[str]:
    """Create or update printer rows from their definition files; returns changed names.

    A printer whose file was removed is disabled, not deleted: its history stays.
    """
    changed = []
    with unit_of_work(lab.engine) as session:
        rows = {p.name: p for p in session.exec(select(Printer)).all()}
        for name, d in lab.printers.items():
            values = dict(
                serial=d.serial,
                connector=d.connector,
                url=d.url,
                model=d.model,
                technology=d.technology,
                build_x=d.build_volume[0],
                build_y=d.build_volume[1],
                build_z=d.build_volume[2],
                nozzle_mm=d.nozzle_mm,
                min_feature_mm=d.min_feature_mm,
                material=d.material,
                profiles=list(d.profiles),
                calibration_due=d.calibration_due,
                definition_sha256=d.sha256,
                enabled=True,
            )
            row = rows.get(name)
            if row is None:
                # A manual printer is never polled: idle until a technician confirms a start.
                initial = (
                    {"state": PrinterState.IDLE, "state_detail": MANUAL_DETAIL} if d.manual else {}
                )
                row = Printer(name=name, **values, **initial)
                session.add(row)
                audit.record(session, SYSTEM, "printer.registered", "printer", name, after=values)
                changed.append(name)
            elif row.definition_sha256 != d.sha256 or not row.enabled:
                before = {k: getattr(row, k) for k in values}
                for key, value in values.items():
                    setattr(row, key, value)
                if d.manual and row.state == PrinterState.OFFLINE:  # switched to manual
                    move(
                        session,
                        row,
                        PrinterState.IDLE,
                        actor=SYSTEM,
                        action="printer.state",
                        reason="the printer is now manual: never polled",
                        state_detail=MANUAL_DETAIL,
                        error=None,
                    )
                audit.record(
                    session, SYSTEM, "printer.updated", "printer", name, before=before, after=values
                )
                changed.append(name)
        for name, row in rows.items():
            if name not in lab.printers and row.enabled:
                row.enabled = False
                audit.record(
                    session,
                    SYSTEM,
                    "printer.disabled",
                    "printer",
                    name,
                    before={"enabled": True},
                    after={"enabled": False},
                    reason="definition file removed from printers/",
                )
                changed.append(name)
    return changed
