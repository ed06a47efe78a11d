"""The outbox: deliveries to the hospital's systems (e-mail, webhooks, the PACS), written in the
transaction of the event that needs them and sent by the worker afterwards, never inside a
transaction and never in the way of the person whose action caused them.

Each attempt claims the message under a lease (`transitions.move`, audited), sends it with
the channel's sender, and records the answer: sent, or waiting again with an exponential
back-off, or failed after the last attempt (the admin outbox page shows it and can retry).
A worker that dies mid-send leaves a lease that expires; the message is then sent again, so
senders are idempotent where the peer allows it (a DICOM instance keeps its UID).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import Session, select

from pocprint.domain.outbox import OutboxState, retry_delay_s
from pocprint.domain.roles import Permission
from pocprint.domain.steps import Step
from pocprint.hospital.errors import PeerError
from pocprint.services import audit, leases
from pocprint.services.actors import SYSTEM, Actor
from pocprint.services.errors import NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.services.transitions import StaleState, move
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import OutboxMessage, utcnow

log = logging.getLogger(__name__)
# A sender delivers one message and returns what the peer answered (kept on the message).
Sender = Callable[[Lab, OutboxMessage], dict]


def add(
    session: Session,
    *,
    channel: str,
    destination: str,
    subject: str,
    payload: dict,
    notification_id: int | None = None,
) -> OutboxMessage:
    """Queue a delivery inside the caller's transaction (sent once that commits)."""
    message = OutboxMessage(
        channel=channel,
        destination=destination[:255],
        subject=str(subject)[:64],
        payload=payload,
        notification_id=notification_id,
        state=OutboxState.PENDING,
        next_attempt_at=utcnow(),
    )
    session.add(message)
    session.flush()
    return message


def _hand_back_expired(lab: Lab) -> None:
    """Messages whose sender died mid-send wait again (their lease expired)."""
    now = utcnow()
    with read_session(lab.engine) as session:  # most passes find nothing: no write lock
        if (
            session.exec(
                select(OutboxMessage.id).where(OutboxMessage.state == OutboxState.SENDING)
            ).first()
            is None
        ):
            return
    with unit_of_work(lab.engine) as session:
        rows = session.exec(
            select(OutboxMessage).where(OutboxMessage.state == OutboxState.SENDING)
        ).all()
        for row in rows:
            if leases.expired(row.lease_owner, row.lease_expires_at, now):
                try:
                    move(
                        session,
                        row,
                        OutboxState.PENDING,
                        actor=SYSTEM,
                        action="outbox.lease_expired",
                        lease=row.lease_owner,
                        next_attempt_at=now,
                    )
                except StaleState:
                    continue


def deliver_due(lab: Lab, senders: dict[str, Sender], limit: int = 50) -> int:
    """Send every message that is due; returns how many were sent."""
    _hand_back_expired(lab)
    with read_session(lab.engine) as session:
        due = session.exec(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.state == OutboxState.PENDING,
                OutboxMessage.next_attempt_at <= utcnow(),
            )
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
        ).all()
    return sum(_deliver_one(lab, senders, message_id) for message_id in due)


def _deliver_one(lab: Lab, senders: dict[str, Sender], message_id: int) -> bool:
    with unit_of_work(lab.engine) as session:
        message = session.get(OutboxMessage, message_id)
        if message is None or message.state != OutboxState.PENDING:
            return False
        token = leases.claim(
            lab,
            session,
            message,
            OutboxState.SENDING,
            expected=OutboxState.PENDING,
            action="outbox.sending",
            after={"channel": message.channel, "destination": message.destination},
        )
    if token is None:
        return False
    error, result = None, {}
    sender = senders.get(message.channel)
    try:
        if sender is None:
            raise PeerError(f"no sender for the {message.channel} channel")
        result = sender(lab, message) or {}
    except PeerError as exc:
        error = str(exc)
    except Exception as exc:  # a defect or a missing file: recorded, retried, never lost
        log.exception("outbox message %s: sending failed", message_id)
        error = f"{type(exc).__name__}: {exc}"
    with unit_of_work(lab.engine) as session:
        message = session.get(OutboxMessage, message_id)
        try:
            _record(lab, session, message, token, error, result)
        except StaleState:
            log.warning("outbox message %s: the lease was lost while sending", message_id)
            return False
    return error is None


def _record(lab: Lab, session: Session, message, token: str, error, result: dict) -> None:
    now = utcnow()
    attempts = message.attempts + 1
    if error is None:
        move(
            session,
            message,
            OutboxState.SENT,
            actor=SYSTEM,
            action="outbox.sent",
            lease=token,
            after={"channel": message.channel, "attempts": attempts, **result},
            attempts=attempts,
            sent_at=now,
            result=result,
            last_error=None,
        )
        on_sent = (message.payload or {}).get("on_sent")
        if on_sent:  # e.g. "device.archived" on the device the archive belongs to
            audit.record(
                session,
                SYSTEM,
                on_sent["action"],
                on_sent["entity"],
                on_sent["entity_id"],
                after=result,
            )
        return
    settings = lab.settings
    if attempts >= settings.outbox_max_attempts:
        move(
            session,
            message,
            OutboxState.FAILED,
            actor=SYSTEM,
            action="outbox.failed",
            lease=token,
            reason=error[:2000],
            after={"attempts": attempts},
            attempts=attempts,
            last_error=error[:2000],
        )
        return
    delay = retry_delay_s(attempts, settings.outbox_retry_base_s, settings.outbox_retry_max_s)
    move(
        session,
        message,
        OutboxState.PENDING,
        actor=SYSTEM,
        action="outbox.retry_later",
        lease=token,
        reason=error[:2000],
        after={"attempts": attempts, "retry_in_s": delay},
        attempts=attempts,
        last_error=error[:2000],
        next_attempt_at=now + timedelta(seconds=delay),
    )


def retry(lab: Lab, actor: Actor, message_id: int) -> None:
    """An administrator sends a failed message again (after fixing the cause)."""
    actor.require(Permission.MANAGE_USERS)
    with unit_of_work(lab.engine) as session:
        message = session.get(OutboxMessage, message_id)
        if message is None:
            raise NotFound(f"no outbox message {message_id}")
        if message.state != OutboxState.FAILED:
            raise WrongState(f"outbox message {message_id} is {message.state}, not failed")
        move(
            session,
            message,
            OutboxState.PENDING,
            actor=actor,
            action="outbox.retried",
            attempts=0,
            next_attempt_at=utcnow(),
        )
    lab.due(Step.OUTBOX)
