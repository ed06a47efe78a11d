"""What pocprint needs from a printer, independent of the host software that drives it.

Connectors translate a vendor API (OctoPrint, later others) into these few types so that
dispatch, monitoring and traceability code can be written and tested once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

# Defined with the lifecycle tables (domain/states.py); connectors report it.
from pocprint.domain.states import PrinterState as PrinterState


@dataclass(frozen=True)
class PrinterStatus:
    """A snapshot of one printer, as its host software reports it."""

    state: PrinterState
    detail: str
    job_file: str | None = None
    progress: float | None = None
    print_time_s: int | None = None
    print_time_left_s: int | None = None
    temperatures: dict[str, dict[str, float | None]] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class RemoteFile:
    """A file stored on the printer, with the printer's own hash and print history."""

    name: str
    size: int
    sha1: str | None
    last_print_at: float | None = None
    last_print_success: bool | None = None
    prints_success: int = 0
    prints_failure: int = 0


class ConnectorError(Exception):
    """The printer did not do what was asked, or could not be reached.

    ``str()`` is a human-readable message meant for a lab technician.
    """


class PrinterUnreachable(ConnectorError):
    """No answer from the printer's host: network down, host off, wrong URL."""


@runtime_checkable
class PrinterConnector(Protocol):
    """Operations pocprint performs on a printer. Implementations must be thread-safe enough
    to be called from a poller and a request handler, and must never log credentials."""

    def status(self) -> PrinterStatus:
        """Current state; never raises for an unreachable printer (returns OFFLINE)."""
        ...

    def upload(self, local_path: Path, remote_name: str) -> RemoteFile:
        """Store a file on the printer without selecting or starting it."""
        ...

    def file_info(self, remote_name: str) -> RemoteFile | None:
        """The stored file's size, hash and print history, or None if absent."""
        ...

    def download(self, remote_name: str, dest: Path) -> None:
        """Fetch a stored file back, e.g. to prove it is byte-identical to what was sent."""
        ...

    def start(self, remote_name: str) -> None:
        """Select and print a stored file; raise ConnectorError unless it really started."""
        ...

    def pause(self) -> None:
        """Pause the running print."""
        ...

    def resume(self) -> None:
        """Resume a paused print."""
        ...

    def cancel(self) -> None:
        """Cancel the running or paused print."""
        ...

    def delete(self, remote_name: str) -> None:
        """Remove a stored file (no error if it is already gone)."""
        ...


_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
MAX_REMOTE_NAME = 200


def check_remote_name(remote_name: str) -> str:
    """Return ``remote_name`` if it is a plain, safe G-code file name, else raise ValueError.

    Names reach printer URLs and file systems, so only ``[A-Za-z0-9._-]`` is allowed: no
    folders, no ``..``, no hidden files, and the name must end with ``.gcode``.
    """
    if not isinstance(remote_name, str) or not remote_name:
        raise ValueError("remote file name must be a non-empty string")
    if len(remote_name) > MAX_REMOTE_NAME:
        raise ValueError(f"remote file name longer than {MAX_REMOTE_NAME} characters")
    if "/" in remote_name or "\\" in remote_name or ".." in remote_name:
        raise ValueError(f"remote file name {remote_name!r} must not contain a path")
    if not _SAFE_NAME.fullmatch(remote_name):
        raise ValueError(
            f"remote file name {remote_name!r} may only contain letters, digits, '.', '_' and '-'"
        )
    if remote_name.startswith("."):
        raise ValueError(f"remote file name {remote_name!r} must not start with '.'")
    if not remote_name.endswith(".gcode") or remote_name == ".gcode":
        raise ValueError(f"remote file name {remote_name!r} must end with '.gcode'")
    return remote_name
