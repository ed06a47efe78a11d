"""Content-addressed file store: every file is kept once, under its SHA-256.

The services see the small `FileStore` protocol. The filesystem store is also the
multi-machine layout: its root on a shared mount (NFS), every writer atomic (a temporary name
carrying the writer's host and pid, fsync, rename) and every reader checking the SHA-256, so
no machine ever reads a half-written or damaged file as a record.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import tempfile
from pathlib import Path
from typing import Protocol

from pocprint.faults import kill_point

CHUNK = 1 << 20
TEMP_PREFIX = ".incoming-"


class StoreFull(OSError):
    """The file store's disk is full: nothing was stored (the partial copy is removed)."""


class BlobDamaged(OSError):
    """A stored file no longer matches the SHA-256 it is stored under."""


class FileStore(Protocol):
    root: Path

    def path(self, sha256: str) -> Path: ...
    def exists(self, sha256: str) -> bool: ...
    def put_file(self, source: Path) -> tuple[str, int]: ...
    def verify(self, sha256: str) -> bool: ...
    def verified_path(self, sha256: str) -> Path: ...
    def copy_out(self, sha256: str, dest: Path) -> Path: ...


def temp_prefix() -> str:
    """`.incoming-<pid>@<host>.`: the sweeper on the writer's own host can tell a dead
    writer's file from one still being written; other hosts' are judged by age alone."""
    return f"{TEMP_PREFIX}{os.getpid()}@{socket.gethostname()}."


def temp_writer(name: str) -> tuple[int | None, str | None]:
    """(pid, host) of a temporary file's writer, from its name (None where not told)."""
    rest = name.removeprefix(TEMP_PREFIX)
    if "@" in rest:
        pid, _, tail = rest.partition("@")
        host = tail[: tail.rfind(".")] if "." in tail else tail
    else:  # written before hosts were named: `<pid>-<random>`
        pid, host = rest.partition("-")[0], None
    return (int(pid) if pid.isdigit() else None), host


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put_file(self, source: Path) -> tuple[str, int]:
        """Copy a file in (atomically, fsynced); returns (sha256, size). Idempotent."""
        # The writer's pid in the name: a crash leaves it behind, and the sweeper can
        # tell a dead writer's file from one still being written.
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=temp_prefix())
        tmp = Path(tmp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, Path(source).open("rb") as src:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            target = self.path(sha)
            if target.exists():
                tmp.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                kill_point("blob.temp_written")
                os.replace(tmp, target)
            return sha, size
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull(
                    exc.errno,
                    f"the file store at {self.root} is full; nothing was stored: "
                    "free space on its disk",
                ) from exc
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def verify(self, sha256: str) -> bool:
        path = self.path(sha256)
        return path.exists() and sha256_of(path) == sha256

    def verified_path(self, sha256: str) -> Path:
        """The stored file's path, once its content was checked against its SHA-256."""
        if not self.verify(sha256):
            raise BlobDamaged(
                f"stored file {sha256[:12]}… is missing or does not match its SHA-256"
            )
        return self.path(sha256)

    def copy_out(self, sha256: str, dest: Path) -> Path:
        """Copy a stored file out, checking the SHA-256 of what was copied."""
        digest = hashlib.sha256()
        with self.path(sha256).open("rb") as src, Path(dest).open("wb") as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            Path(dest).unlink(missing_ok=True)
            raise BlobDamaged(f"stored file {sha256[:12]}… does not match its SHA-256")
        return dest
