"""The health of the workers, for `pocprint status` and the admin status page."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func
from sqlmodel import Session, select

from pocprint.domain.states import JobState, PartState
from pocprint.domain.steps import Step
from pocprint.store.models import AuditEvent, BuildJob, LeaderChange, Part, WorkerHeartbeat, utcnow

ALIVE_S = 20  # a worker beats every 5 s; three missed beats and it counts as gone

# The step each waiting state is waiting for.
WAITING = (
    (Step.PROCESS_PART, Part, PartState.QUEUED),
    (Step.SLICE_JOB, BuildJob, JobState.SLICE_QUEUED),
    (Step.DISPATCH, BuildJob, JobState.READY),
    (Step.SEND_JOB, BuildJob, JobState.DISPATCHING),
)


def status(session: Session, queue_depths: dict[str, int | None] | None = None) -> dict:
    now = utcnow()
    workers = [
        {
            "name": w.name,
            "host": w.host,
            "pid": w.pid,
            "queues": w.queues,
            "dispatcher": w.dispatcher,
            "seen_s_ago": round((now - w.seen_at).total_seconds(), 1),
            "alive": now - w.seen_at < timedelta(seconds=ALIVE_S),
        }
        for w in session.exec(select(WorkerHeartbeat).order_by(WorkerHeartbeat.name))
    ]
    waiting = []
    for step, model, state in WAITING:
        count, oldest = session.exec(
            select(func.count(model.id), func.min(model.updated_at)).where(model.state == state)
        ).one()
        waiting.append(
            {
                "step": step.value,
                "waiting": count,
                "oldest_s": round((now - _aware(oldest)).total_seconds(), 1) if oldest else None,
            }
        )
    takeovers = session.exec(
        select(func.count(LeaderChange.id)).where(LeaderChange.previous.is_not(None))
    ).one()
    last = session.exec(select(LeaderChange).order_by(LeaderChange.id.desc()).limit(1)).first()
    swept = session.exec(
        select(func.count(AuditEvent.id)).where(AuditEvent.action.like("%.lease_expired"))
    ).one()
    return {
        "workers": workers,
        "alive": sum(w["alive"] for w in workers),
        "queues": queue_depths or {},
        "waiting": waiting,
        "dispatcher": last.holder if last else None,
        "dispatcher_takeovers": takeovers,
        "lease_takeovers": swept,
    }


def _aware(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)
