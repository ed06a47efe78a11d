"""The outbox page's rows: deliveries to the hospital's systems, failures first."""

from __future__ import annotations

from sqlalchemy import case as sql_case
from sqlmodel import Session, func, select

from pocprint.store.models import Notification, OutboxMessage

ORDER = sql_case({"failed": 0, "sending": 1, "pending": 2, "sent": 3}, value=OutboxMessage.state)


def outbox_rows(session: Session, limit: int = 200) -> list[dict]:
    rows = session.exec(
        select(OutboxMessage, Notification.event)
        .join(Notification, Notification.id == OutboxMessage.notification_id, isouter=True)
        .order_by(ORDER, OutboxMessage.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": m.id,
            "channel": m.channel,
            "destination": m.destination,
            "what": event
            or ("archive the device's model in the PACS" if m.channel == "dicom" else ""),
            "subject": m.subject,
            "state": m.state,
            "attempts": m.attempts,
            "last_error": m.last_error,
            "next_attempt_at": m.next_attempt_at if m.state == "pending" else None,
            "created_at": m.created_at,
            "sent_at": m.sent_at,
        }
        for m, event in rows
    ]


def outbox_counts(session: Session) -> dict[str, int]:
    return dict(
        session.exec(select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)).all()
    )
