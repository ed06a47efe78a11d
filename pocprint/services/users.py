"""Accounts, sign-in and API tokens. Passwords are argon2 hashes; none is ever a default."""

from __future__ import annotations

import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, func, select

from pocprint.domain.roles import Permission, Role, format_roles, parse_roles
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import AuthFailed, Invalid, NotFound
from pocprint.services.lab import Lab
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import ApiToken, User, utcnow

_hasher = PasswordHasher()
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
# Verifying against this keeps a wrong username as slow as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def actor_of(user: User) -> Actor:
    return Actor(user.id, user.username, user.full_name, parse_roles(user.roles))


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def _check_new_user(username: str, full_name: str, password: str, roles: set[Role]) -> None:
    if not USERNAME.match(username):
        raise Invalid("username: 2-64 lower-case letters, digits, dots, dashes or underscores")
    if not full_name.strip():
        raise Invalid("full name is required (it is printed on signatures)")
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"password must have at least {MIN_PASSWORD} characters")
    if not roles:
        raise Invalid("a user needs at least one role")


def _insert_user(
    session: Session, actor: Actor | str, username: str, full_name: str, password: str, roles
) -> User:
    if session.exec(select(User).where(User.username == username)).first():
        raise Invalid(f"username {username} is taken")
    user = User(
        username=username,
        full_name=full_name.strip(),
        password_hash=_hasher.hash(password),
        roles=format_roles(roles),
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "user.created",
        "user",
        user.id,
        after={"username": username, "full_name": user.full_name, "roles": user.roles},
    )
    return user


def create_user(
    lab: Lab, actor: Actor, username: str, full_name: str, password: str, roles: set[Role]
) -> int:
    actor.require(Permission.MANAGE_USERS)
    _check_new_user(username, full_name, password, roles)
    with unit_of_work(lab.engine) as session:
        return _insert_user(session, actor, username, full_name, password, roles).id


def bootstrap_admin(lab: Lab, username: str = "admin", full_name: str = "Administrator") -> str:
    """Create the first admin when the lab has no users; returns the one-time password.

    There is no default password: this random one is shown once and never stored in clear.
    """
    password = generate_password()
    roles = {Role.ADMIN}
    _check_new_user(username, full_name, password, roles)
    with unit_of_work(lab.engine) as session:
        if session.exec(select(func.count()).select_from(User)).one() > 0:
            raise Invalid("the lab already has users; an admin adds new ones")
        _insert_user(session, "bootstrap", username, full_name, password, roles)
    return password


def has_users(lab: Lab) -> bool:
    with read_session(lab.engine) as session:
        return session.exec(select(func.count()).select_from(User)).one() > 0


def verify_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(lab: Lab, username: str, password: str) -> Actor:
    with unit_of_work(lab.engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            verify_password(
                User(username="", full_name="", password_hash=_DUMMY_HASH, roles=""), password
            )
            raise AuthFailed("unknown user or wrong password")
        if not user.active or not verify_password(user, password):
            audit.record(session, username, "user.login_failed", "user", user.id)
            session.commit()
            raise AuthFailed("unknown user or wrong password")
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        user.last_login_at = utcnow()
        audit.record(session, user.username, "user.login", "user", user.id)
        return actor_of(user)


def load_actor(lab: Lab, user_id: int) -> Actor | None:
    with read_session(lab.engine) as session:
        user = session.get(User, user_id)
        return actor_of(user) if user and user.active else None


def reauthenticate(session: Session, actor: Actor, password: str) -> User:
    """Signatures need the signer's password again (two components: signed-in ID + password)."""
    user = session.get(User, actor.user_id) if actor.user_id else None
    if user is None or not user.active or not verify_password(user, password or ""):
        raise AuthFailed("password does not match: the signature was not recorded")
    return user


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(lab: Lab, username: str, label: str = "") -> str:
    """A bearer token for scripted use of the JSON API (shown once, stored as a hash)."""
    token = "pp_" + secrets.token_urlsafe(32)
    with unit_of_work(lab.engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            raise NotFound(f"no user {username}")
        row = ApiToken(user_id=user.id, token_sha256=_token_digest(token), label=label)
        session.add(row)
        session.flush()
        audit.record(session, "cli", "api_token.created", "user", user.id, after={"label": label})
    return token


def actor_from_token(lab: Lab, token: str) -> Actor | None:
    with read_session(lab.engine) as session:
        row = session.exec(
            select(ApiToken).where(ApiToken.token_sha256 == _token_digest(token))
        ).first()
        if row is None or row.revoked_at is not None:
            return None
        user = session.get(User, row.user_id)
        return actor_of(user) if user and user.active else None
