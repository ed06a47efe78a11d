"""Reading the audit chain: verification (streamed in id order) and the current head."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session

from pocprint.store.models import AuditChainHead, AuditEvent
from pocprint.trace.audit_chain import GENESIS, ChainCheck, verify, verify_sqlite_file

_COLUMNS = (
    AuditEvent.id,
    AuditEvent.at,
    AuditEvent.actor,
    AuditEvent.action,
    AuditEvent.entity,
    AuditEvent.entity_id,
    AuditEvent.before,
    AuditEvent.after,
    AuditEvent.reason,
    AuditEvent.prev_hash,
    AuditEvent.hash,
)


def verify_chain(engine: Engine, batch: int = 20_000) -> ChainCheck:
    """Walk every event in id order without building ORM objects.

    A SQLite file is read directly and verified in parallel (1M events in seconds); other
    databases are streamed through SQLAlchemy Core.
    """
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return verify_sqlite_file(database)
    query = sa.select(*_COLUMNS).order_by(AuditEvent.id)
    # One read transaction (a single snapshot; no write lock on SQLite) for the whole walk.
    with engine.execution_options(pocprint_read_only=True).connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
        try:
            return verify(rows)
        finally:
            rows.close()
            conn.rollback()


@dataclass(frozen=True)
class ChainHead:
    hash: str
    events: int


def chain_head(session: Session) -> ChainHead:
    """The head of the chain as the writers keep it: copy it to an outside record."""
    row = session.get(AuditChainHead, 1)
    if row is None:
        return ChainHead(GENESIS, 0)
    return ChainHead(row.head_hash, row.events)
