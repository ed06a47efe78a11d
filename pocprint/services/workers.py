"""Worker processes on record: heartbeats and who took the dispatcher lock when.

Operational facts about processes, not about cases or devices, so they are not audit
events; they feed `pocprint status` and the admin status page.
"""

from __future__ import annotations

import socket

from sqlalchemy import delete, update
from sqlmodel import select

from pocprint.services.lab import Lab
from pocprint.store.db import unit_of_work
from pocprint.store.models import LeaderChange, WorkerHeartbeat, utcnow


def beat(lab: Lab, name: str, pid: int, queues: list[str], dispatcher: bool) -> None:
    """This worker is alive (and whether it holds the dispatcher lock now)."""
    with unit_of_work(lab.engine) as session:
        row = session.get(WorkerHeartbeat, name)
        if row is None:
            session.add(
                WorkerHeartbeat(
                    name=name,
                    host=socket.gethostname()[:100],
                    pid=pid,
                    queues=",".join(queues),
                    dispatcher=dispatcher,
                )
            )
            return
        session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.name == name)
            .values(seen_at=utcnow(), dispatcher=dispatcher)
        )


def leave(lab: Lab, name: str) -> None:
    """A worker stopping cleanly takes its row away (a killed one just stops beating)."""
    with unit_of_work(lab.engine) as session:
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))


def took_lock(lab: Lab, lock: str, holder: str) -> None:
    """Record that `holder` took `lock`, after whoever held it last."""
    with unit_of_work(lab.engine) as session:
        previous = session.exec(
            select(LeaderChange.holder)
            .where(LeaderChange.lock == lock)
            .order_by(LeaderChange.id.desc())
            .limit(1)
        ).first()
        session.add(LeaderChange(lock=lock, holder=holder, previous=previous))
        session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.name != holder, WorkerHeartbeat.dispatcher)
            .values(dispatcher=False)
        )
