"""The one path for every state change of a part, a build job or a printer.

`move` asks the domain's transition table, then changes the row with a conditional UPDATE
on the state the caller expects (and, for a worker step, on the lease it holds), stamps
`updated_at` and appends the audit event with before and after, all in the caller's
transaction. A concurrent change therefore loses cleanly and visibly: `StaleState` names
the state that won, and nothing of the losing change is written.

Callers pass every field that changes with the state as keyword values, so that these are
written by the same conditional UPDATE (an attribute set beforehand would be flushed
unconditionally and could overwrite what a technician just did).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from pocprint.domain.outbox import LEASED_OUTBOX_STATES, OUTBOX_TRANSITIONS
from pocprint.domain.states import (
    JOB_TRANSITIONS,
    LEASED_JOB_STATES,
    LEASED_PART_STATES,
    PART_TRANSITIONS,
    PRINTER_TRANSITIONS,
    InvalidTransition,
    check_transition,
)
from pocprint.services import audit, notifications
from pocprint.services.actors import Actor
from pocprint.services.errors import WrongState
from pocprint.store.models import BuildJob, OutboxMessage, Part, Printer, utcnow


class StaleState(WrongState):
    """Someone changed the row first: the expected state no longer holds; nothing written."""

    def __init__(self, message: str, current: str | None):
        super().__init__(message)
        self.current = current


@dataclass(frozen=True)
class _Kind:
    table: dict
    entity: str  # the audit event's entity
    what: str  # in messages
    label: Callable[[Any], Any]  # the audit event's entity id
    leased: frozenset[str]


KINDS: dict[type, _Kind] = {
    Part: _Kind(PART_TRANSITIONS, "part", "part", lambda r: r.id, LEASED_PART_STATES),
    BuildJob: _Kind(JOB_TRANSITIONS, "job", "build job", lambda r: r.serial, LEASED_JOB_STATES),
    Printer: _Kind(PRINTER_TRANSITIONS, "printer", "printer", lambda r: r.name, frozenset()),
    OutboxMessage: _Kind(
        OUTBOX_TRANSITIONS, "outbox", "outbox message", lambda r: r.id, LEASED_OUTBOX_STATES
    ),
}


def move(
    session: Session,
    row: Part | BuildJob | Printer,
    target: str,
    *,
    actor: Actor | str,
    action: str,
    expected: str | None = None,
    lease: str | None = None,
    reason: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
    **values: Any,
) -> None:
    """Move `row` to `target` if it is still in `expected` (default: the state it was read
    in) and, with `lease`, still held under that lease. Raises WrongState for a move the
    table forbids and StaleState when a concurrent change won."""
    kind = KINDS[type(row)]
    current = str(expected if expected is not None else row.state)
    target = str(target)
    name = f"{kind.what} {kind.label(row)}"
    try:
        check_transition(kind.table, current, target, name)
    except InvalidTransition as exc:
        raise WrongState(str(exc)) from exc
    model = type(row)
    changes = {"state": target, "updated_at": utcnow(), **values}
    if hasattr(model, "lease_owner") and target not in kind.leased:
        changes.setdefault("lease_owner", None)  # leaving a worker step ends its lease
        changes.setdefault("lease_expires_at", None)
    conditions = [model.id == row.id, model.state == current]
    if lease is not None:
        conditions.append(model.lease_owner == lease)
    result = session.execute(
        update(model).where(*conditions).values(**changes),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:
        session.refresh(row)
        held = f" under lease {lease}" if lease is not None else ""
        raise StaleState(
            f"{name} is {row.state} now, not {current}{held}: '{action}' was not applied",
            row.state,
        )
    for key, value in changes.items():
        set_committed_value(row, key, value)
    audit.record(
        session,
        actor,
        action,
        kind.entity,
        kind.label(row),
        before={"state": current, **(before or {})},
        after={"state": target, **(after or {})},
        reason=reason,
    )
    notifications.after_move(session, row, current, target)  # in the same transaction


def update_if(session: Session, row, *, state: str, lease: str | None = None, **values) -> bool:
    """Change fields (not the state) only while the row is still in `state` (and held
    under `lease`); returns whether it was. For progress and similar facts a worker records
    about a row it follows, which must never land on a row someone else has moved on."""
    model = type(row)
    conditions = [model.id == row.id, model.state == str(state)]
    if lease is not None:
        conditions.append(model.lease_owner == lease)
    result = session.execute(
        update(model).where(*conditions).values(**values),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:
        return False
    for key, value in values.items():
        set_committed_value(row, key, value)
    return True
