"""API tokens: named bearer tokens for scripts, with an expiry, a last-used time, revocation,
and an audit event for every use of a revoked or expired token.

A token is shown once and stored as its SHA-256. It carries no roles of its own: each request
acts with its user's roles at that moment, and stops when the user is deactivated.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import select

from pocprint.domain.roles import Permission, Role
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.services.users import actor_of
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import ApiToken, User, utcnow

log = logging.getLogger(__name__)
PREFIX = "pp_"
# The last-used time is written at most this often per token (a busy script would otherwise
# turn every read into a write).
LAST_USED_RESOLUTION = timedelta(seconds=60)
# The command line acts as an administrator (whoever can run it can read the database).
CLI = Actor(None, "cli", "command line", frozenset({Role.ADMIN}))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def create_token(
    lab: Lab, actor: Actor, username: str, name: str, days: int | None = None
) -> tuple[int, str]:
    """A new token for `username`: (its id, the token, shown once)."""
    actor.require(Permission.MANAGE_USERS)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise Invalid("give the token a name (up to 100 characters), e.g. what script uses it")
    days = lab.settings.token_days if days is None else int(days)
    if not 1 <= days <= lab.settings.token_max_days:
        raise Invalid(f"a token lasts 1 to {lab.settings.token_max_days} days")
    token = PREFIX + secrets.token_urlsafe(32)
    with unit_of_work(lab.engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            raise NotFound(f"no user {username}")
        if not user.active:
            raise WrongState(f"{username} is deactivated; a token would not work")
        row = ApiToken(
            user_id=user.id,
            token_sha256=digest(token),
            label=name,
            created_by=actor.user_id,
            expires_at=utcnow() + timedelta(days=days),
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "api_token.created",
            "api_token",
            row.id,
            after={"user": username, "name": name, "expires_at": row.expires_at},
        )
        return row.id, token


def create_api_token(lab: Lab, username: str, label: str = "") -> str:
    """A token made from the command line (and by tests and benchmarks), default expiry."""
    return create_token(lab, CLI, username, label or "api")[1]


def revoke_token(lab: Lab, actor: Actor, token_id: int, reason: str = "") -> None:
    actor.require(Permission.MANAGE_USERS)
    with unit_of_work(lab.engine) as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise NotFound(f"no API token {token_id}")
        if row.revoked_at is not None:
            raise WrongState(f"token {token_id} ({row.label}) is already revoked")
        row.revoked_at = utcnow()
        row.revoked_by = actor.user_id
        row.revoke_reason = (reason or "").strip()[:500] or None
        audit.record(
            session,
            actor,
            "api_token.revoked",
            "api_token",
            row.id,
            before={"revoked_at": None},
            after={"revoked_at": row.revoked_at, "name": row.label},
            reason=row.revoke_reason,
        )


def actor_from_token(lab: Lab, token: str) -> Actor | None:
    """The actor a bearer token stands for now, or None. A revoked or expired token, or one
    whose user is deactivated, is refused and the attempt audited; the last-used time is
    kept to the minute."""
    now = utcnow()
    with read_session(lab.engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == digest(token))).first()
        if row is None:
            return None
        user = session.get(User, row.user_id)
    if row.revoked_at is not None:
        refusal = "revoked"
    elif row.expires_at is None or row.expires_at <= now:
        refusal = "expired"
    elif user is None or not user.active:
        refusal = "user deactivated"
    else:
        refusal = None
    if refusal:
        with unit_of_work(lab.engine) as session:
            audit.record(
                session,
                f"token:{row.id}",
                "api_token.refused",
                "api_token",
                row.id,
                after={"reason": refusal, "user_id": row.user_id, "name": row.label},
            )
        log.warning("API token %s (%s) refused: %s", row.id, row.label, refusal)
        return None
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_RESOLUTION:
        table = ApiToken.__table__
        with unit_of_work(lab.engine) as session:
            session.connection().execute(
                sa.update(table)
                .where(
                    table.c.id == row.id,
                    sa.or_(
                        table.c.last_used_at.is_(None),
                        table.c.last_used_at < now - LAST_USED_RESOLUTION,
                    ),
                )
                .values(last_used_at=now)
            )
    return actor_of(user)
