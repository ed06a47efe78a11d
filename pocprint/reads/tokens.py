"""API tokens as the admin page and `pocprint tokens list` show them (never the token)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from pocprint.store.models import ApiToken, User, utcnow


def token_state(row: ApiToken, user_active: bool, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is None or row.expires_at <= now:
        return "expired"
    if not user_active:
        return "user deactivated"
    return "active"


def token_rows(session: Session, username: str | None = None) -> list[dict]:
    now = utcnow()
    query = select(ApiToken, User).join(User, User.id == ApiToken.user_id)
    if username:
        query = query.where(User.username == username)
    rows = session.exec(query.order_by(ApiToken.id)).all()
    return [
        {
            "id": token.id,
            "name": token.label,
            "user": user.username,
            "created_at": token.created_at,
            "expires_at": token.expires_at,
            "last_used_at": token.last_used_at,
            "revoked_at": token.revoked_at,
            "revoke_reason": token.revoke_reason,
            "state": token_state(token, user.active, now),
        }
        for token, user in rows
    ]
