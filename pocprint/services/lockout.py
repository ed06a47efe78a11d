"""Counting failed passwords and locking: one counter per account (and one per unknown user
name), changed by single conditional UPDATEs so concurrent failures are never lost.

Sign-in and the re-entry of the password for a signature or a password change count alike:
guessing a password at an unattended tablet locks the account as guessing at the sign-in
page does (21 CFR 11.300(d)).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from pocprint.config import Settings
from pocprint.store.models import SignInThrottle, User, utcnow

# Rows for names without an account are kept this long after their last failure.
THROTTLE_KEPT = timedelta(days=1)


def aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def locked_until(moment: datetime | None, now: datetime) -> datetime | None:
    """The end of a lock still running, else None."""
    moment = aware(moment)
    return moment if moment is not None and moment > now else None


def lock_message(until: datetime) -> str:
    return (
        f"this account is locked until {until:%H:%M} UTC after repeated wrong passwords; "
        "an administrator can unlock it"
    )


def count_failure(
    session: Session, settings: Settings, user_id: int
) -> tuple[int, datetime | None]:
    """One more failure for an account: (failures in a row, end of the lock this failure set).

    The increment and the lock are each one UPDATE on the row, so two failures at the same
    moment both count and only one of them locks."""
    conn = session.connection()
    table = User.__table__
    failed = conn.execute(
        sa.update(table)
        .where(table.c.id == user_id)
        .values(failed_logins=table.c.failed_logins + 1)
        .returning(table.c.failed_logins)
    ).scalar_one()
    if failed < settings.lockout_attempts:
        return failed, None
    until = utcnow() + timedelta(minutes=settings.lockout_minutes)
    locked = conn.execute(
        sa.update(table)
        .where(table.c.id == user_id, table.c.failed_logins >= settings.lockout_attempts)
        .values(failed_logins=0, locked_until=until)
        .returning(table.c.id)
    ).first()
    return failed, (until if locked else None)


def clear_failures(session: Session, user_id: int) -> None:
    table = User.__table__
    session.connection().execute(
        sa.update(table)
        .where(table.c.id == user_id, table.c.failed_logins > 0)
        .values(failed_logins=0)
    )


def _name_key(username: str) -> str:
    return hashlib.sha256(username.encode("utf-8", "replace")).hexdigest()


def unknown_name_lock(session: Session, username: str, now: datetime) -> datetime | None:
    row = session.get(SignInThrottle, _name_key(username))
    return locked_until(row.locked_until, now) if row else None


def count_unknown_name(session: Session, settings: Settings, username: str) -> None:
    """A failure for a name with no account, counted and locked like an account's."""
    now = utcnow()
    table = SignInThrottle.__table__
    conn = session.connection()
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)
    failed = conn.execute(
        insert.values(name_sha256=_name_key(username), failed=1, updated_at=now)
        .on_conflict_do_update(
            index_elements=[table.c.name_sha256],
            set_={"failed": table.c.failed + 1, "updated_at": now},
        )
        .returning(table.c.failed)
    ).scalar_one()
    if failed >= settings.lockout_attempts:
        conn.execute(
            sa.update(table)
            .where(table.c.name_sha256 == _name_key(username))
            .values(failed=0, locked_until=now + timedelta(minutes=settings.lockout_minutes))
        )
    conn.execute(sa.delete(table).where(table.c.updated_at < now - THROTTLE_KEPT))
