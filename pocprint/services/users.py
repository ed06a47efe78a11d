"""Accounts, sign-in and re-authentication (API tokens: services/tokens.py; the lockout
counter: services/lockout.py). Passwords are argon2 hashes; none is ever a default."""

from __future__ import annotations

import logging
import os
import re
import secrets

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, func, select

from pocprint.config import Settings
from pocprint.domain import passwords
from pocprint.domain.roles import Permission, Role, format_roles, parse_roles
from pocprint.services import audit, directory, lockout
from pocprint.services.actors import Actor
from pocprint.services.errors import AuthFailed, Invalid, NotFound
from pocprint.services.lab import Lab
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import User, utcnow

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
# Verifying against this keeps a wrong username as slow as a wrong password.
_DUMMY_USER = User(
    username="", full_name="", password_hash=_hasher.hash(secrets.token_hex(16)), roles=""
)
# One answer for an unknown name, a wrong password and a deactivated account.
WRONG = "unknown user or wrong password"


def actor_of(user: User) -> Actor:
    return Actor(
        user.id,
        user.username,
        user.full_name,
        parse_roles(user.roles),
        must_change_password=bool(user.must_change_password),
    )


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def password_problem(
    password: str, username: str, full_name: str, settings: Settings | None = None
) -> str | None:
    """Long, hard-to-guess passphrases rather than composition rules (domain/passwords.py)."""
    return passwords.password_problem(
        password,
        username,
        full_name,
        site_name=settings.site_name if settings else "",
        min_score=settings.min_password_score if settings else passwords.DEFAULT_MIN_SCORE,
    )


def _check_new_user(
    username: str, full_name: str, password: str, roles: set[Role], settings: Settings
) -> None:
    if not USERNAME.match(username):
        raise Invalid("username: 2-64 lower-case letters, digits, dots, dashes or underscores")
    if not full_name.strip():
        raise Invalid("full name is required (it is printed on signatures)")
    if problem := password_problem(password, username, full_name, settings):
        raise Invalid(problem)
    if not roles:
        raise Invalid("a user needs at least one role")


def _insert_user(
    session: Session,
    actor: Actor | str,
    username: str,
    full_name: str,
    password: str,
    roles,
    must_change: bool,
) -> User:
    if session.exec(select(User).where(User.username == username)).first():
        raise Invalid(f"username {username} is taken")
    user = User(
        username=username,
        full_name=full_name.strip(),
        password_hash=_hasher.hash(password),
        roles=format_roles(roles),
        must_change_password=must_change,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "user.created",
        "user",
        user.id,
        after={
            "username": username,
            "full_name": user.full_name,
            "roles": user.roles,
            "one_time_password": must_change,
        },
    )
    return user


def create_user(
    lab: Lab,
    actor: Actor,
    username: str,
    full_name: str,
    password: str,
    roles: set[Role],
    *,
    one_time: bool = True,
) -> int:
    """A new account. The password is one-time unless `one_time` is False (a password the
    user chose themselves): the user must replace it at the first sign-in."""
    actor.require(Permission.MANAGE_USERS)
    _check_new_user(username, full_name, password, roles, lab.settings)
    with unit_of_work(lab.engine) as session:
        return _insert_user(session, actor, username, full_name, password, roles, one_time).id


def bootstrap_admin(lab: Lab, username: str = "admin", full_name: str = "Administrator") -> str:
    """Create the first admin when the lab has no users; returns the one-time password.

    There is no default password: this random one is shown once, never stored in clear, and
    must be replaced at the first sign-in.
    """
    password = generate_password()
    roles = {Role.ADMIN}
    _check_new_user(username, full_name, password, roles, lab.settings)
    with unit_of_work(lab.engine) as session:
        if session.exec(select(func.count()).select_from(User)).one() > 0:
            raise Invalid("the lab already has users; an admin adds new ones")
        _insert_user(session, "bootstrap", username, full_name, password, roles, True)
    return password


def has_users(lab: Lab) -> bool:
    with read_session(lab.engine) as session:
        return session.exec(select(func.count()).select_from(User)).one() > 0


def verify_password(user: User, password: str) -> bool:
    """The one place a password is checked against an account (sign-in, signatures, password
    change): a directory account is checked by the hospital directory (services/directory.py)."""
    if directory.is_directory_account(user):
        return directory.verify(user, password)
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(lab: Lab, username: str, password: str) -> Actor:
    """Sign in. Repeated failures lock the account for a while (config [accounts]); every
    failure, lock and refusal is audited. A name without an account is counted and locked
    the same way, so no answer tells which accounts exist."""
    settings = lab.settings
    with unit_of_work(lab.engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
        now = utcnow()
        if user is None:
            verify_password(_DUMMY_USER, password)  # as slow as a real check
            if until := lockout.unknown_name_lock(session, username, now):
                raise AuthFailed(lockout.lock_message(until))
            lockout.count_unknown_name(session, settings, username)
            session.commit()
            raise AuthFailed(WRONG)
        if until := lockout.locked_until(user.locked_until, now):
            verify_password(user, password)  # same cost whether locked or not
            audit.record(session, username, "user.login_refused_locked", "user", user.id)
            session.commit()
            raise AuthFailed(lockout.lock_message(until))
        if not user.active or not verify_password(user, password):
            failed, locked = lockout.count_failure(session, settings, user.id)
            audit.record(
                session,
                username,
                "user.login_failed",
                "user",
                user.id,
                after={"failed_logins": failed},
            )
            if locked:
                _audit_lock(session, user.id, locked, f"{failed} failed sign-ins in a row")
            session.commit()
            raise AuthFailed(WRONG)
        if not directory.is_directory_account(user) and _hasher.check_needs_rehash(
            user.password_hash
        ):
            user.password_hash = _hasher.hash(password)
        user.last_login_at = now
        user.failed_logins = 0
        user.locked_until = None
        audit.record(session, user.username, "user.login", "user", user.id)
        return actor_of(user)


def _audit_lock(session: Session, user_id: int, until, why: str) -> None:
    audit.record(
        session,
        "system",
        "user.locked",
        "user",
        user_id,
        after={"locked_until": until},
        reason=why,
    )


def load_actor(lab: Lab, user_id: int) -> Actor | None:
    with read_session(lab.engine) as session:
        user = session.get(User, user_id)
        return actor_of(user) if user and user.active else None


def reauthenticate(
    session: Session, settings: Settings, actor: Actor, password: str, purpose: str
) -> User:
    """The password again, for a signature or a password change (two components: signed-in
    ID + password). It honours a lock, and a wrong one counts toward the lockout like a
    failed sign-in: the use case is abandoned (its transaction rolled back) and the failure
    is recorded and committed in its place. `purpose` names what was being signed."""
    user = session.get(User, actor.user_id) if actor.user_id else None
    if user is None:
        raise AuthFailed(f"password does not match: {purpose} was not recorded")
    user_id, now = user.id, utcnow()
    if until := lockout.locked_until(user.locked_until, now):
        verify_password(user, password or "")
        session.rollback()
        audit.record(
            session, actor, "user.reauth_refused_locked", "user", user_id, after={"for": purpose}
        )
        session.commit()
        raise AuthFailed(f"{lockout.lock_message(until)}; {purpose} was not recorded")
    if not user.active or not verify_password(user, password or ""):
        session.rollback()
        failed, locked = lockout.count_failure(session, settings, user_id)
        audit.record(
            session,
            actor,
            "user.reauth_failed",
            "user",
            user_id,
            after={"for": purpose, "failed_logins": failed},
        )
        if locked:
            _audit_lock(session, user_id, locked, f"{failed} wrong passwords in a row")
        session.commit()
        raise AuthFailed(f"password does not match: {purpose} was not recorded")
    lockout.clear_failures(session, user_id)
    return user


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
        user.must_change_password = True
        user.locked_until = None
        user.failed_logins = 0
        audit.record(
            session, actor, "user.password_reset", "user", user.id, after={"one_time": True}
        )
    return password


def change_password(lab: Lab, actor: Actor, current: str, new: str) -> None:
    """A signed-in user replaces their own password (the current one is asked again, and
    counts toward the lockout); this ends a one-time password."""
    if not actor.user_id:
        raise AuthFailed("only a signed-in user changes their password")
    with unit_of_work(lab.engine) as session:
        user = reauthenticate(session, lab.settings, actor, current, "the password change")
        directory.refuse_local_password(user)
        if problem := password_problem(new, user.username, user.full_name, lab.settings):
            raise Invalid(problem)
        if verify_password(user, new):
            raise Invalid("the new password must differ from the current one")
        was_one_time = user.must_change_password
        user.password_hash = _hasher.hash(new)
        user.password_changed_at = utcnow()
        user.must_change_password = False
        audit.record(
            session,
            actor,
            "user.password_changed",
            "user",
            user.id,
            after={"replaced_one_time_password": bool(was_one_time)},
        )


def user_list(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(User.username)).all())
