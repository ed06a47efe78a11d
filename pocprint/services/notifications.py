"""Notifications: a part needs attention, a case awaits review or approval, a job may miss
its needed-by date, a print failed or was interrupted, a device is ready for release.

Each is written as a `Notification` row in the same transaction as the change that causes it
(state moves call `after_move` from `transitions.move`); the worker then fans it out to the
destinations the roles subscribed to ([notifications.roles.*]) as outbox messages and sends
them (`services.outbox`). Messages carry codes and a link only, never patient identity.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, select

from pocprint.domain.notifications import Event, events_for_job, events_for_part, message
from pocprint.hospital.delivery import send_email as smtp_send
from pocprint.hospital.delivery import send_webhook as webhook_send
from pocprint.hospital.errors import PeerError
from pocprint.services import audit
from pocprint.services.actors import SYSTEM
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Case, Notification, OutboxMessage, Part, utcnow


def emit(
    session: Session,
    event: Event,
    *,
    case: Case | None,
    subject: str,
    reason: str = "",
    link: str = "",
    dedupe_key: str | None = None,
) -> Notification | None:
    """Write a notification in the caller's transaction (None: this fact was already told)."""
    if dedupe_key is not None:
        seen = session.exec(
            select(Notification.id).where(Notification.dedupe_key == dedupe_key)
        ).first()
        if seen is not None:
            return None
    row = Notification(
        event=event.value,
        case_id=case.id if case else None,
        subject=str(subject)[:64],
        detail={"reason": reason, "link": link},
        dedupe_key=dedupe_key,
    )
    session.add(row)
    session.flush()
    return row


def after_move(session: Session, row, current: str, target: str) -> None:
    """Called by transitions.move after every state change, in its transaction."""
    if current == target:
        return
    if isinstance(row, Part):
        events = events_for_part(target, row.verdict)
        case = session.get(Case, row.case_id) if events else None
        for event, reason in events:
            emit(
                session,
                event,
                case=case,
                subject=f"part {row.id}",
                reason=reason,
                link=f"/parts/{row.id}"
                if event == Event.AWAITING_APPROVAL
                else f"/cases/{row.case_id}",
            )
    elif isinstance(row, BuildJob):
        events = events_for_job(target)
        case = session.get(Case, row.case_id) if events else None
        for event, reason in events:
            emit(
                session,
                event,
                case=case,
                subject=row.serial,
                reason=reason,
                link=f"/devices/{row.serial}",
            )


def case_awaits_review(session: Session, case: Case, reason: str) -> None:
    emit(
        session,
        Event.AWAITING_REVIEW,
        case=case,
        subject=case.code,
        reason=reason,
        link=f"/cases/{case.id}/review",
    )


def fan_out(lab) -> int:
    """Turn new notifications into outbox messages, one per subscribed destination."""
    config = lab.hospital.notify
    base = lab.settings.public_base_url or ""
    count = 0
    with read_session(lab.engine) as session:  # most passes find nothing: no write lock
        if (
            session.exec(
                select(Notification.id).where(Notification.fanned_out_at.is_(None))
            ).first()
            is None
        ):
            return 0
    with unit_of_work(lab.engine) as session:
        rows = session.exec(
            select(Notification)
            .where(Notification.fanned_out_at.is_(None))
            .order_by(Notification.id)
            .limit(200)
        ).all()
        for row in rows:
            claimed = session.execute(  # one worker fans a notification out, never two
                update(Notification)
                .where(Notification.id == row.id, Notification.fanned_out_at.is_(None))
                .values(fanned_out_at=utcnow()),
                execution_options={"synchronize_session": False},
            )
            if claimed.rowcount != 1:
                continue
            case = session.get(Case, row.case_id) if row.case_id else None
            detail = row.detail or {}
            text = message(
                Event(row.event),
                case_code=case.code if case else None,
                patient_code=case.patient_code if case else None,
                subject=row.subject,
                reason=detail.get("reason", ""),
                link=base + detail.get("link", "/"),
            )
            for channel, destination in config.destinations(row.event) if config else []:
                session.add(
                    OutboxMessage(
                        channel=channel,
                        destination=destination,
                        notification_id=row.id,
                        subject=row.subject,
                        payload=text,
                        state="pending",
                        next_attempt_at=utcnow(),
                    )
                )
                count += 1
    return count


def send_email(lab, outbox: OutboxMessage) -> dict:
    config = lab.hospital.notify
    if config is None or config.smtp is None:
        raise PeerError("no mail server is configured ([notifications.email])")
    payload = outbox.payload or {}
    smtp_send(config.smtp, outbox.destination, payload["title"], payload["text"])
    return {"to": outbox.destination}


def send_webhook(lab, outbox: OutboxMessage) -> dict:
    config = lab.hospital.notify
    hook = config.webhooks.get(outbox.destination) if config else None
    if hook is None:
        raise PeerError(f"webhook {outbox.destination} is no longer configured")
    status = webhook_send(hook, (outbox.payload or {})["body"])
    return {"http_status": status}


def part_awaits_approval(session: Session, part: Part, reason: str) -> None:
    case = session.get(Case, part.case_id)
    emit(
        session,
        Event.AWAITING_APPROVAL,
        case=case,
        subject=f"part {part.id}",
        reason=reason,
        link=f"/parts/{part.id}",
    )


def device_ready_for_release(session: Session, job: BuildJob) -> None:
    case = session.get(Case, job.case_id)
    emit(
        session,
        Event.READY_FOR_RELEASE,
        case=case,
        subject=job.serial,
        reason="every post-processing step is done and QA passed: the release can be signed",
        link=f"/devices/{job.serial}",
    )


def jobs_at_risk(lab, at_risk: list[dict]) -> int:
    """Tell once per job and needed-by date that a queued job may be late (the board's own
    prediction, passed in by the worker); returns how many were new."""
    told = 0
    with unit_of_work(lab.engine) as session:
        for row in at_risk:
            job = session.get(BuildJob, row["id"])
            if job is None:
                continue
            case = session.get(Case, job.case_id)
            key = f"job_at_risk:{job.serial}:{case.needed_by.isoformat()}"
            predicted = row.get("predicted_finish")
            note = emit(
                session,
                Event.JOB_AT_RISK,
                case=case,
                subject=job.serial,
                reason=f"predicted to finish {predicted:%Y-%m-%d %H:%M} UTC, needed by "
                f"{case.needed_by.isoformat()}"
                if predicted
                else f"needed by {case.needed_by.isoformat()}",
                link=f"/devices/{job.serial}",
                dedupe_key=key,
            )
            if note is not None:
                audit.record(
                    session,
                    SYSTEM,
                    "job.at_risk",
                    "job",
                    job.serial,
                    after={"predicted_finish": predicted, "needed_by": case.needed_by},
                )
                told += 1
    return told


def cases_at_risk(lab, at_risk: list[dict]) -> int:
    """Tell once per case and needed-by date that the planning lay-out predicts it ready too
    late, with what would save it; `at_risk` rows: {job_id, ready, rescue}. Returns how many
    were new."""
    told = 0
    with unit_of_work(lab.engine) as session:
        for row in at_risk:
            job = session.get(BuildJob, row["job_id"])
            if job is None:
                continue
            case = session.get(Case, job.case_id)
            ready = row["ready"]
            rescue = row.get("rescue") or "no re-planning saves it: agree a new date"
            note = emit(
                session,
                Event.JOB_AT_RISK,
                case=case,
                subject=case.code,
                reason=f"predicted ready {ready:%Y-%m-%d %H:%M} UTC, needed by "
                f"{case.needed_by.isoformat()}; {rescue}",
                link="/planning/",
                dedupe_key=f"case_at_risk:{case.code}:{case.needed_by.isoformat()}",
            )
            if note is not None:
                audit.record(
                    session,
                    SYSTEM,
                    "case.at_risk",
                    "case",
                    case.code,
                    after={"predicted_ready": ready, "needed_by": case.needed_by},
                    reason=rescue,
                )
                told += 1
    return told
