"""Claiming worker steps. A step moves a row from a waiting state to a running state with a
conditional UPDATE, so it runs once even if two workers or two ticks see the same row; after
a restart, rows left in a running state are put back or marked (see recovery)."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session


def claim(session: Session, model, row_id: int, from_state: str, to_state: str, **values) -> bool:
    result = session.execute(
        update(model)
        .where(model.id == row_id, model.state == from_state)
        .values(state=to_state, **values)
    )
    return result.rowcount == 1
