"""Leases on worker steps: a claimed part or job names its holder and an expiry.

A worker claims a row by moving it into a running state with a fresh lease token
(``host:pid:random``), renews the lease while it works, and makes its final move only while
it still holds that lease. If the worker dies, the lease expires (or its process is seen
dead on this host) and the sweeper hands the step on; a late finish by the old holder then
loses cleanly instead of overwriting the new one.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session

from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.services.transitions import StaleState, move
from pocprint.store.db import unit_of_work
from pocprint.store.models import utcnow

log = logging.getLogger(__name__)
_HOST = socket.gethostname()
_issued: set[str] = set()  # tokens this process handed out (tells a reused pid apart)


def new_token() -> str:
    token = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"
    _issued.add(token)
    return token


PLAN = ":plan"  # suffix of a planning claim: no sender has taken the job over yet


def plan_token() -> str:
    """The lease of a dispatch claim that waits for its `send_job` step; carries the
    planner's host and pid, so a dead planner's claim is swept at once on its host."""
    token = new_token() + PLAN
    _issued.add(token)
    return token


def is_plan(token: str | None) -> bool:
    return bool(token) and token.endswith(PLAN)


def holder_is_dead(token: str | None) -> bool:
    """True when the lease holder is a process on this host that no longer runs (a crash
    or a kill). Holders on other hosts are judged by the lease's expiry alone."""
    if not token:
        return True  # a running step without a lease predates leases: it was cut off
    host, _, rest = token.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token not in _issued  # a previous process that had our pid
    return not pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Does a process with this pid run on this host?"""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def expired(token: str | None, expires_at: datetime | None, now: datetime) -> bool:
    return holder_is_dead(token) or expires_at is None or expires_at < now


def retry_delay(lab: Lab, attempts: int) -> timedelta:
    """Exponential back-off after the n-th failed attempt."""
    s = lab.settings
    return timedelta(seconds=min(s.retry_base_s * 2 ** max(attempts - 1, 0), s.retry_max_s))


def claim(
    lab: Lab,
    session: Session,
    row,
    running_state: str,
    *,
    expected: str,
    action: str,
    after: dict | None = None,
    **values,
) -> str | None:
    """Move `row` from `expected` into its running state under a new lease; returns the
    lease token, or None when another worker (or a person) got there first."""
    token = new_token()
    try:
        move(
            session,
            row,
            running_state,
            actor=SYSTEM,
            action=action,
            expected=expected,
            after={"lease": token, **(after or {})},
            lease_owner=token,
            lease_expires_at=utcnow() + timedelta(seconds=lab.settings.lease_s),
            **values,
        )
    except StaleState:
        return None
    return token


@contextmanager
def renewed(lab: Lab, model, row_id: int, token: str, state: str) -> Iterator[threading.Event]:
    """Renew the lease in the background while the caller works; yields an Event that is
    set if the lease was lost (swept by someone who judged this worker dead)."""
    lost = threading.Event()
    stop = threading.Event()
    period = max(lab.settings.lease_s / 4, 0.05)

    def beat() -> None:
        while not stop.wait(period):
            try:
                with unit_of_work(lab.engine) as session:
                    result = session.execute(
                        update(model)
                        .where(model.id == row_id, model.lease_owner == token, model.state == state)
                        .values(lease_expires_at=utcnow() + timedelta(seconds=lab.settings.lease_s))
                    )
                if result.rowcount != 1:
                    lost.set()
                    return
            except Exception as exc:  # a database hiccup: the next beat tries again
                log.warning("lease %s: renewal failed: %s", token, exc)

    thread = threading.Thread(target=beat, name=f"lease-{row_id}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        stop.set()
        thread.join(timeout=10)
