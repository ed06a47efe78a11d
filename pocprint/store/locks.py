"""One holder at a time across processes and machines: the dispatcher and the poller.

On PostgreSQL a session-level advisory lock held on a connection of its own: when the holder
dies, its connection closes and the server frees the lock, so another worker takes over on
its next try. On SQLite (one machine only) an flock on a file beside the database, freed by
the kernel when the holder dies. Both are tried without waiting; a worker that does not hold
the lock simply tries again later.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)


class LeaderLock(Protocol):
    name: str

    def try_acquire(self) -> bool:
        """Take the lock if free (or keep it); True while this process holds it."""

    def holds(self) -> bool:
        """Still held? (False once the connection or file was lost.)"""

    def release(self) -> None: ...


def lock_key(name: str, schema: str = "") -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock from the lock's name and the
    schema pocprint's tables live in: advisory locks are per database, and two pocprint
    installations may share one database in schemas of their own."""
    digest = hashlib.sha256(f"pocprint:{schema}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock:
    def __init__(self, engine: Engine, name: str):
        self.engine, self.name = engine, name
        self.key: int | None = None
        self._conn: Connection | None = None
        self._backend: int | None = None  # the server session that holds the lock

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.holds()
        conn = self.engine.connect()
        try:
            if self.key is None:
                self.key = lock_key(
                    self.name, conn.execute(text("SELECT current_schema()")).scalar()
                )
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            conn.commit()  # the lock is session-level: it outlives this transaction
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        self._backend = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        conn.commit()
        return True

    def holds(self) -> bool:
        if self._conn is None:
            return False
        # The lock lives as long as its server session; a connection that silently reconnected
        # is a new session, which holds nothing.
        try:
            backend = self._conn.execute(text("SELECT pg_backend_pid()")).scalar()
            self._conn.commit()
        except Exception as exc:
            log.warning("lock %s: lost its connection: %s", self.name, exc)
            backend = None
        if backend != self._backend:
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self._conn.commit()
        except Exception:  # noqa: S110 - closing the connection frees it anyway
            pass
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # never hand a connection holding the lock back to the pool
                conn.close()
            except Exception:  # noqa: S110
                pass


class FileLock:
    def __init__(self, path: Path, name: str):
        self.name, self.path = name, Path(path)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def holds(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing frees the flock
            self._fd = None


def leader_lock(engine: Engine, name: str, lock_dir: Path) -> LeaderLock:
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, name)
    return FileLock(Path(lock_dir) / f"{name}.lock", name)
