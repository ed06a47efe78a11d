"""Walking the audit chain for verification (read-only, streamed in id order)."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import select

from pocprint.store.db import read_session
from pocprint.store.models import AuditEvent
from pocprint.trace.audit_chain import ChainCheck, verify


def verify_chain(engine: Engine) -> ChainCheck:
    with read_session(engine) as session:
        rows = session.exec(
            select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=5000)
        )
        return verify(rows)
