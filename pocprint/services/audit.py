"""Appending audit events inside the caller's transaction."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlmodel import Session, select

from pocprint.services.actors import Actor
from pocprint.store.models import AuditChainHead, AuditEvent, utcnow
from pocprint.trace.audit_chain import GENESIS, event_hash


def plain(value: Any) -> Any:
    """JSON-ready copy (dates as ISO text) so the hash is computed over what is stored."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def record(
    session: Session,
    actor: Actor | str,
    action: str,
    entity: str,
    entity_id: Any,
    *,
    before: dict | None = None,
    after: dict | None = None,
    reason: str | None = None,
) -> AuditEvent:
    actor_name = actor if isinstance(actor, str) else actor.username
    head = session.exec(
        select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update()
    ).one_or_none()
    if head is None:
        head = AuditChainHead(id=1, head_hash=GENESIS, events=0)
        session.add(head)
    at = utcnow()
    before, after = plain(before), plain(after)
    event = AuditEvent(
        at=at,
        actor=actor_name,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        before=before,
        after=after,
        reason=reason,
        prev_hash=head.head_hash,
        hash=event_hash(
            head.head_hash, at, actor_name, action, entity, str(entity_id), before, after, reason
        ),
    )
    session.add(event)
    head.head_hash = event.hash
    head.events += 1
    session.flush()
    return event
