"""Directory sign-in: people sign in with their hospital (LDAP / Active Directory) account and
their directory groups give their pocprint roles ([directory.roles] in the configuration).

A directory person gets a local account row on their first sign-in, marked so that its
password is never a local one (`DIRECTORY_ACCOUNT`): lockout, audit, sessions, signatures and
API tokens work on that row exactly as for a local account, and `services.users` asks this
module, at its one password check, whenever the row is a directory account (signatures thus
re-authenticate against the directory). Local accounts stay possible beside the directory:
the first admin, and sites without one; a local account is never touched here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import object_session
from sqlmodel import select

from pocprint.domain.roles import Role, format_roles
from pocprint.hospital.directory import DirectoryConfig, check_password, find_person
from pocprint.hospital.errors import PeerError
from pocprint.services import audit
from pocprint.services.errors import AuthFailed, Invalid
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import User

if TYPE_CHECKING:
    from pocprint.services.lab import Lab

log = logging.getLogger(__name__)
# The password hash of a directory account: not an argon2 hash, so no local password can
# ever match it, even if this module were bypassed.
DIRECTORY_ACCOUNT = "!directory"
_configs: WeakKeyDictionary = WeakKeyDictionary()  # engine -> DirectoryConfig


class DirectoryUnavailable(AuthFailed):
    """The directory did not answer: the sign-in or signature fails, and nothing is counted
    against the person."""

    http_status = 503


def register(lab: Lab) -> None:
    """Remember which directory checks passwords for this lab's database (built once)."""
    if lab.hospital.directory is not None:
        _configs[lab.engine] = lab.hospital.directory
    else:
        _configs.pop(lab.engine, None)


def is_directory_account(user: User) -> bool:
    return user.password_hash == DIRECTORY_ACCOUNT


def refuse_local_password(user: User) -> None:
    if is_directory_account(user):
        raise Invalid(
            f"{user.username} signs in with the hospital directory: the password is changed there"
        )


def _config_of(user: User) -> DirectoryConfig | None:
    session = object_session(user)
    return _configs.get(session.get_bind()) if session is not None else None


def verify(user: User, password: str) -> bool:
    """The directory's answer to "is this the person's password?" (bind as the person)."""
    config = _config_of(user)
    if config is None:
        return False  # the site no longer has a directory: nobody signs in as this account
    try:
        person = find_person(config, user.username)
        return person is not None and check_password(config, person.dn, password)
    except PeerError as exc:
        raise DirectoryUnavailable(str(exc)) from exc


def sync_account(lab: Lab, username: str) -> None:
    """Before a sign-in: create or update the account of a directory person (full name and
    roles from their groups). Audited; a local account of that name is left alone."""
    config = lab.hospital.directory
    if config is None:
        return
    with read_session(lab.engine) as session:
        user = session.exec(select(User).where(User.username == username)).first()
    if user is not None and not is_directory_account(user):
        return
    try:
        person = find_person(config, username)  # a network call: never inside a transaction
    except PeerError as exc:
        raise DirectoryUnavailable(str(exc)) from exc
    if person is None:
        return
    roles = {Role(r) for r in person.roles(config)}
    try:
        with unit_of_work(lab.engine) as session:
            _apply(session, username, person.full_name, roles, config)
    except IntegrityError:  # a concurrent first sign-in created it: that one is as good
        log.info("directory account %s was created concurrently", username)
    if not roles:  # out of every mapped group: its roles are gone (audited), no sign-in
        raise AuthFailed("unknown user or wrong password")


def _apply(session, username: str, full_name: str, roles: set[Role], config) -> None:
    user = session.exec(select(User).where(User.username == username)).first()
    roles_text = format_roles(roles)
    if user is None:
        if not roles:
            return  # in no mapped group: nothing to create, the sign-in fails as unknown
        user = User(
            username=username,
            full_name=full_name[:200],
            password_hash=DIRECTORY_ACCOUNT,
            roles=roles_text,
        )
        session.add(user)
        session.flush()
        audit.record(
            session,
            "directory",
            "user.created",
            "user",
            user.id,
            after={"username": username, "full_name": user.full_name, "roles": roles_text},
            reason=f"first sign-in through the {config.label}",
        )
        return
    if not is_directory_account(user):
        return
    before = {"full_name": user.full_name, "roles": user.roles}
    after = {"full_name": full_name[:200], "roles": roles_text}
    if before == after:
        return
    user.full_name, user.roles = after["full_name"], after["roles"]
    audit.record(
        session,
        "directory",
        "user.directory_synced",
        "user",
        user.id,
        before=before,
        after=after,
        reason=f"groups and name as the {config.label} holds them",
    )
