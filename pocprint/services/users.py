"""Accounts, sign-in and API tokens. Passwords are argon2 hashes; none is ever a default."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, func, select

from pocprint.domain.roles import Permission, Role, format_roles, parse_roles
from pocprint.services import audit, directory
from pocprint.services.actors import Actor
from pocprint.services.errors import AuthFailed, Invalid, NotFound
from pocprint.services.lab import Lab
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import ApiToken, User, utcnow

# Test suites only: argon2's cheapest parameters, so hundreds of throw-away accounts do not
# cost minutes. The variable's name says what it is; a service started with it warns loudly.
CHEAP_HASHES_FOR_TESTS = "POCPRINT_INSECURE_CHEAP_PASSWORD_HASHES_FOR_TESTS"


def _make_hasher() -> PasswordHasher:
    if os.environ.get(CHEAP_HASHES_FOR_TESTS) == "1":
        logging.getLogger(__name__).warning(
            "%s=1: passwords are hashed with argon2's cheapest test parameters; "
            "never use this outside a test suite",
            CHEAP_HASHES_FOR_TESTS,
        )
        return PasswordHasher.from_parameters(profiles.CHEAPEST)
    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile


_hasher = _make_hasher()
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 12
# Verifying against this keeps a wrong username as slow as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def actor_of(user: User) -> Actor:
    return Actor(user.id, user.username, user.full_name, parse_roles(user.roles))


def generate_password() -> str:
    return secrets.token_urlsafe(15)


MAX_PASSWORD = 256
_COMMON = {"password", "passw0rd", "123456", "qwerty", "letmein", "welcome", "changeme", "admin"}


def password_problem(password: str, username: str, full_name: str) -> str | None:
    """Long passphrases rather than composition rules: length, and nothing guessable."""
    if len(password) < MIN_PASSWORD:
        return f"password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"password must have at most {MAX_PASSWORD} characters"
    lowered = password.lower()
    if len(set(password)) < 4:
        return "password must not be a repetition of a few characters"
    if username and username.lower() in lowered:
        return "password must not contain the username"
    for part in re.split(r"[\s.,'-]+", full_name.lower()):
        if len(part) >= 4 and part in lowered:
            return "password must not contain the user's name"
    if any(word in lowered for word in _COMMON):
        return "password must not contain a common password such as 'password' or '123456'"
    return None


def _check_new_user(username: str, full_name: str, password: str, roles: set[Role]) -> None:
    if not USERNAME.match(username):
        raise Invalid("username: 2-64 lower-case letters, digits, dots, dashes or underscores")
    if not full_name.strip():
        raise Invalid("full name is required (it is printed on signatures)")
    if problem := password_problem(password, username, full_name):
        raise Invalid(problem)
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
    if directory.is_directory_account(user):  # the hospital directory checks it (issue 11)
        return directory.verify(user, password)
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(lab: Lab, username: str, password: str) -> Actor:
    """Sign in. Repeated failures lock the account for a while (config [accounts]); every
    failure, lock and refusal is audited."""
    settings = lab.settings
    with unit_of_work(lab.engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        if user is None:
            verify_password(
                User(username="", full_name="", password_hash=_DUMMY_HASH, roles=""), password
            )
            raise AuthFailed("unknown user or wrong password")
        now = utcnow()
        if user.locked_until is not None and _aware(user.locked_until) > now:
            verify_password(user, password)  # same cost whether locked or not
            audit.record(session, username, "user.login_refused_locked", "user", user.id)
            session.commit()
            raise AuthFailed(
                f"this account is locked until {_aware(user.locked_until):%H:%M} UTC after "
                "repeated failed sign-ins; an administrator can unlock it"
            )
        if not user.active or not verify_password(user, password):
            user.failed_logins += 1
            audit.record(
                session,
                username,
                "user.login_failed",
                "user",
                user.id,
                after={"failed_logins": user.failed_logins},
            )
            if user.active and user.failed_logins >= settings.lockout_attempts:
                user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
                user.failed_logins = 0
                audit.record(
                    session,
                    "system",
                    "user.locked",
                    "user",
                    user.id,
                    after={"locked_until": user.locked_until},
                    reason=f"{settings.lockout_attempts} failed sign-ins in a row",
                )
            session.commit()
            raise AuthFailed("unknown user or wrong password")
        if not directory.is_directory_account(user) and _hasher.check_needs_rehash(
            user.password_hash
        ):
            user.password_hash = _hasher.hash(password)
        user.last_login_at = now
        user.failed_logins = 0
        user.locked_until = None
        audit.record(session, user.username, "user.login", "user", user.id)
        return actor_of(user)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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


# ---------------------------------------------------------------- administration (audited)


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


def _active_admins(session: Session) -> list[User]:
    users = session.exec(select(User).where(User.active.is_(True))).all()
    return [u for u in users if Role.ADMIN in parse_roles(u.roles)]


def set_roles(lab: Lab, actor: Actor, user_id: int, roles: set[Role]) -> None:
    actor.require(Permission.MANAGE_USERS)
    if not roles:
        raise Invalid("a user needs at least one role")
    with unit_of_work(lab.engine) as session:
        user = _user(session, user_id)
        before = user.roles
        admins = _active_admins(session)
        if Role.ADMIN not in roles and [u.id for u in admins] == [user.id]:
            raise Invalid("this is the last active administrator; add another one first")
        user.roles = format_roles(roles)
        if user.roles != before:
            audit.record(
                session,
                actor,
                "user.roles_changed",
                "user",
                user.id,
                before={"roles": before},
                after={"roles": user.roles},
            )


def set_active(lab: Lab, actor: Actor, user_id: int, active: bool, reason: str) -> None:
    """Accounts are deactivated, never deleted: signatures and audit events name them."""
    actor.require(Permission.MANAGE_USERS)
    if not (reason or "").strip():
        raise Invalid("say why the account is being (de)activated")
    with unit_of_work(lab.engine) as session:
        user = _user(session, user_id)
        if not active and user.id == actor.user_id:
            raise Invalid("you cannot deactivate your own account")
        if not active and [u.id for u in _active_admins(session)] == [user.id]:
            raise Invalid("this is the last active administrator; add another one first")
        if user.active == active:
            return
        user.active = active
        audit.record(
            session,
            actor,
            "user.activated" if active else "user.deactivated",
            "user",
            user.id,
            before={"active": not active},
            after={"active": active},
            reason=reason.strip(),
        )


def unlock(lab: Lab, actor: Actor, user_id: int) -> None:
    actor.require(Permission.MANAGE_USERS)
    with unit_of_work(lab.engine) as session:
        user = _user(session, user_id)
        before = user.locked_until
        user.locked_until = None
        user.failed_logins = 0
        audit.record(
            session, actor, "user.unlocked", "user", user.id, before={"locked_until": before}
        )


def reset_password(lab: Lab, actor: Actor, user_id: int) -> str:
    """A new one-time password, shown once to the admin; the event never holds it."""
    actor.require(Permission.MANAGE_USERS)
    password = generate_password()
    with unit_of_work(lab.engine) as session:
        user = _user(session, user_id)
        directory.refuse_local_password(user)
        user.password_hash = _hasher.hash(password)
        user.password_changed_at = utcnow()
        user.locked_until = None
        user.failed_logins = 0
        audit.record(session, actor, "user.password_reset", "user", user.id)
    return password


def change_password(lab: Lab, actor: Actor, current: str, new: str) -> None:
    """A signed-in user replaces their own password (the current one is asked again)."""
    with unit_of_work(lab.engine) as session:
        user = reauthenticate(session, actor, current)
        directory.refuse_local_password(user)
        if problem := password_problem(new, user.username, user.full_name):
            raise Invalid(problem)
        if verify_password(user, new):
            raise Invalid("the new password must differ from the current one")
        user.password_hash = _hasher.hash(new)
        user.password_changed_at = utcnow()
        audit.record(session, actor, "user.password_changed", "user", user.id)


def user_list(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(User.username)).all())
