"""Receiving an uploaded file into a private temporary file (removed whatever happens)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from werkzeug.datastructures import FileStorage

from pocprint.services.errors import BadMesh


@contextmanager
def received(file: FileStorage | None, work_dir: Path) -> Iterator[Path]:
    if file is None or not file.filename:
        raise BadMesh("choose a mesh file to upload", "empty")
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="upload-") as tmp:
        path = Path(tmp) / "upload"
        file.save(path)
        yield path
