"""Material lots and what they mean for dispatch.

Owned by the traceability work (issue 6). The fleet's dispatcher asks `dispatch_blocks` for
every printer it considers; any reason returned keeps clinical jobs off that printer.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session


def dispatch_blocks(session: Session, printer_id: int, material: str, now: datetime) -> list[str]:
    """Reasons from the material and maintenance records why this printer may not take a job.

    e.g. "material lot L123 expired on 2026-10-01", "no material lot loaded",
    "calibration logged as failed on ...". Empty list: no objection.
    """
    return []
