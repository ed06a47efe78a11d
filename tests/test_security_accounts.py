"""Accounts as a hospital's security review probes them (issue 14): one-time passwords,
guessing at a signature, the atomic lockout counter (concurrent failures on PostgreSQL),
lock messages that do not tell which accounts exist, and API tokens."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import select

from pocprint.config import REPO_ROOT
from pocprint.domain.roles import Role
from pocprint.reads.tokens import token_rows
from pocprint.services import cases, review, tokens, users
from pocprint.services.errors import AuthFailed, Forbidden, Invalid
from pocprint.services.lab import build_lab
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import (
    ApiToken,
    AppropriatenessReview,
    AuditEvent,
    Signature,
    User,
    utcnow,
)

from conftest import PASSWORD, USUAL_SCENARIO, order_fields


def events(lab, prefix: str) -> list[AuditEvent]:
    with read_session(lab.engine) as s:
        rows = s.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
    return [e for e in rows if e.action.startswith(prefix)]


def user_row(lab, username: str) -> User:
    with read_session(lab.engine) as s:
        return s.exec(select(User).where(User.username == username)).one()


# ---------------------------------------------------------------- one-time passwords


def test_a_one_time_password_must_be_replaced_before_anything_else(lab, people):
    admin = people["admin"]
    first = users.create_user(
        lab, admin, "new.tech", "New Technician", "temporary words 1", {Role.TECHNICIAN}
    )
    actor = users.authenticate(lab, "new.tech", "temporary words 1")
    assert actor.must_change_password
    users.change_password(lab, actor, "temporary words 1", "my own quiet passphrase")
    assert not users.authenticate(lab, "new.tech", "my own quiet passphrase").must_change_password
    # A reset hands over another one-time password.
    again = users.reset_password(lab, admin, first)
    assert users.authenticate(lab, "new.tech", again).must_change_password
    created = [e for e in events(lab, "user.created") if e.entity_id == str(first)]
    assert created[0].after["one_time_password"] is True


def test_the_first_administrator_gets_a_one_time_password(tmp_path, database_url, printers_dir):
    from pocprint.store.db import upgrade

    from conftest import make_settings

    settings = make_settings(tmp_path, database_url, printers_dir)
    upgrade(settings.database_url)
    lab = build_lab(settings)
    password = users.bootstrap_admin(lab)
    assert users.authenticate(lab, "admin", password).must_change_password
    lab.engine.dispose()


# ------------------------------------------------- re-entered passwords: lockout and audit


def _review(lab, rad, case_id, password):
    return review.review_case(
        lab, rad, case_id, decision="approve", scenario=USUAL_SCENARIO, password=password
    )


def test_guessing_the_password_at_a_signature_counts_toward_the_lockout(lab, people):
    rad = people["rad"]
    case_id = cases.create_case(lab, people["tech"], **order_fields())
    attempts = lab.settings.lockout_attempts
    for n in range(1, attempts + 1):
        with pytest.raises(AuthFailed, match="signature .* was not recorded"):
            _review(lab, rad, case_id, f"guess number {n}")
    failed = events(lab, "user.reauth_failed")
    assert [e.after["failed_logins"] for e in failed] == list(range(1, attempts + 1))
    assert all(e.actor == "rad" and "reviewed appropriateness" in e.after["for"] for e in failed)
    assert [e.reason for e in events(lab, "user.locked")] == [
        f"{attempts} wrong passwords in a row"
    ]
    # The lock is honoured: the right password is refused now, at a signature and at sign-in.
    with pytest.raises(AuthFailed, match="locked until"):
        _review(lab, rad, case_id, PASSWORD)
    with pytest.raises(AuthFailed, match="locked until"):
        users.authenticate(lab, "rad", PASSWORD)
    assert events(lab, "user.reauth_refused_locked")
    # Each refused signing was abandoned whole: no review, no signature.
    with read_session(lab.engine) as s:
        assert s.exec(select(AppropriatenessReview)).all() == []
        assert s.exec(select(Signature)).all() == []
    users.unlock(lab, people["admin"], user_row(lab, "rad").id)
    assert _review(lab, rad, case_id, PASSWORD)


def test_a_right_password_at_a_signature_clears_the_failures(lab, people):
    rad = people["rad"]
    case_id = cases.create_case(lab, people["tech"], **order_fields())
    with pytest.raises(AuthFailed):
        _review(lab, rad, case_id, "a wrong guess")
    assert user_row(lab, "rad").failed_logins == 1
    _review(lab, rad, case_id, PASSWORD)
    assert user_row(lab, "rad").failed_logins == 0


def test_guessing_the_current_password_at_a_password_change_locks_too(lab, people):
    tech = people["tech"]
    for _ in range(lab.settings.lockout_attempts):
        with pytest.raises(AuthFailed):
            users.change_password(lab, tech, "not my password", "a brand new passphrase")
    assert user_row(lab, "tech").locked_until is not None
    with pytest.raises(AuthFailed, match="locked until"):
        users.change_password(lab, tech, PASSWORD, "a brand new passphrase")
    assert [e.after["for"] for e in events(lab, "user.reauth_failed")][0] == "the password change"


def test_the_lock_message_does_not_tell_which_accounts_exist(lab, people):
    def answers(name: str) -> list[str]:
        out = []
        for _ in range(lab.settings.lockout_attempts + 1):
            with pytest.raises(AuthFailed) as caught:
                users.authenticate(lab, name, "wrong password here")
            out.append(re.sub(r"\d\d:\d\d", "HH:MM", str(caught.value)))
        return out

    known, unknown = answers("tech"), answers("no.such.person")
    assert known == unknown
    assert "locked until HH:MM" in known[-1] and "wrong password" in known[0]
    # Nothing the attacker typed is stored in clear.
    with read_session(lab.engine) as s:
        stored = s.exec(sa.text("SELECT name_sha256, locked_until FROM sign_in_throttle")).all()
    assert stored == [(hashlib.sha256(b"no.such.person").hexdigest(), stored[0][1])]
    assert stored[0][1] is not None


def test_concurrent_failures_are_all_counted(lab, people):
    """A read-modify-write counter loses increments when failures arrive together (on
    PostgreSQL under READ COMMITTED); the conditional UPDATE counts every one."""
    lab.settings = lab.settings.with_(lockout_attempts=10_000)
    threads, per_thread = 8, 5
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def guess():
        barrier.wait()
        for _ in range(per_thread):
            try:
                users.authenticate(lab, "tech", "not the password at all")
            except AuthFailed:
                pass
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    workers = [threading.Thread(target=guess) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not errors, errors
    assert user_row(lab, "tech").failed_logins == threads * per_thread
    counts = sorted(e.after["failed_logins"] for e in events(lab, "user.login_failed"))
    assert counts == list(range(1, threads * per_thread + 1))  # each failure saw its own count


def test_concurrent_failures_lock_once(lab, people):
    lab.settings = lab.settings.with_(lockout_attempts=3)
    barrier = threading.Barrier(6)

    def guess():
        barrier.wait()
        with contextlib.suppress(AuthFailed):
            users.authenticate(lab, "rad", "still not the password")

    workers = [threading.Thread(target=guess) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    locks = events(lab, "user.locked")
    assert 1 <= len(locks) <= 2  # 6 failures at 3 per lock: never more than two locks
    assert user_row(lab, "rad").locked_until is not None


# --------------------------------------------------------------------------- API tokens


def test_tokens_are_named_expire_and_record_their_last_use(lab, people):
    admin = people["admin"]
    with pytest.raises(Invalid, match="name"):
        tokens.create_token(lab, admin, "tech", "  ")
    with pytest.raises(Invalid, match="1 to 365 days"):
        tokens.create_token(lab, admin, "tech", "PACS bridge", days=400)
    with pytest.raises(Forbidden):
        tokens.create_token(lab, people["tech"], "tech", "my own")
    token_id, token = tokens.create_token(lab, admin, "tech", "PACS bridge", days=30)
    with read_session(lab.engine) as s:
        row = s.get(ApiToken, token_id)
        assert token not in str(row.model_dump())  # stored as a hash only
    assert timedelta(days=29) < row.expires_at - utcnow() <= timedelta(days=30)
    assert row.last_used_at is None
    assert tokens.actor_from_token(lab, token).username == "tech"
    with read_session(lab.engine) as s:
        listed = token_rows(s)
    assert [(r["name"], r["user"], r["state"]) for r in listed] == [
        ("PACS bridge", "tech", "active")
    ]
    assert listed[0]["last_used_at"] is not None
    created = events(lab, "api_token.created")[0]
    assert created.actor == "admin" and created.after["name"] == "PACS bridge"


def test_a_token_acts_with_its_users_current_roles_and_stops_with_the_user(lab, people):
    admin = people["admin"]
    _id, token = tokens.create_token(lab, admin, "presc", "ward script")
    presc_id = user_row(lab, "presc").id
    assert Role.PRESCRIBER in tokens.actor_from_token(lab, token).roles
    users.set_roles(lab, admin, presc_id, {Role.AUDITOR})
    assert tokens.actor_from_token(lab, token).roles == {Role.AUDITOR}
    users.set_active(lab, admin, presc_id, False, "left the hospital")
    assert tokens.actor_from_token(lab, token) is None
    refused = events(lab, "api_token.refused")
    assert refused[-1].after["reason"] == "user deactivated"


def test_revoked_and_expired_tokens_are_refused_and_every_use_audited(lab, people):
    admin = people["admin"]
    revoked_id, revoked = tokens.create_token(lab, admin, "tech", "old laptop")
    expired_id, expired = tokens.create_token(lab, admin, "tech", "short job", days=1)
    tokens.revoke_token(lab, admin, revoked_id, "laptop lost")
    with unit_of_work(lab.engine) as s:
        s.get(ApiToken, expired_id).expires_at = utcnow() - timedelta(minutes=1)
    for _ in range(2):
        assert tokens.actor_from_token(lab, revoked) is None
        assert tokens.actor_from_token(lab, expired) is None
    assert tokens.actor_from_token(lab, "pp_never-issued") is None
    refused = [(e.entity_id, e.after["reason"]) for e in events(lab, "api_token.refused")]
    assert refused == [(str(revoked_id), "revoked"), (str(expired_id), "expired")] * 2
    revoke = events(lab, "api_token.revoked")[0]
    assert revoke.actor == "admin" and revoke.reason == "laptop lost"
    with read_session(lab.engine) as s:
        states = {r["id"]: r["state"] for r in token_rows(s)}
    assert states == {revoked_id: "revoked", expired_id: "expired"}


def test_tokens_from_the_command_line(lab, people):
    env = dict(
        os.environ,
        POCPRINT_DATA_DIR=str(lab.settings.data_dir),
        POCPRINT_DATABASE_URL=lab.settings.database_url,
        POCPRINT_SECRET_KEY=lab.settings.secret_key,
    )

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "pocprint.cli", "tokens", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    made = cli("create", "auditor", "--name", "registry export", "--days", "7")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("pp_") and tokens.actor_from_token(lab, token).username == "auditor"
    listing = cli("list")
    assert listing.returncode == 0 and "registry export" in listing.stdout
    assert "active" in listing.stdout and token not in listing.stdout
    token_id = listing.stdout.split("\t", 1)[0]
    assert cli("revoke", token_id, "--reason", "export done").returncode == 0
    assert tokens.actor_from_token(lab, token) is None
    assert "revoked" in cli("list", "--user", "auditor").stdout
    again = cli("revoke", token_id)
    assert again.returncode == 1 and "already revoked" in again.stderr
