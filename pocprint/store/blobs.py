"""Content-addressed file store: every file is kept once, under its SHA-256."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from pocprint.faults import kill_point

CHUNK = 1 << 20
TEMP_PREFIX = ".incoming-"


class StoreFull(OSError):
    """The file store's disk is full: nothing was stored (the partial copy is removed)."""


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
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=f"{TEMP_PREFIX}{os.getpid()}-")
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

    def copy_out(self, sha256: str, dest: Path) -> Path:
        shutil.copyfile(self.path(sha256), dest)
        return dest
