"""Stands in for a printer whose connector cannot be built (for example its API key is
missing), so the fleet board shows the reason instead of the worker failing."""

from __future__ import annotations

from pathlib import Path

from pocprint.connectors.base import ConnectorError, PrinterState, PrinterStatus, RemoteFile


class UnusableConnector:
    def __init__(self, reason: str):
        self.reason = reason

    def status(self) -> PrinterStatus:
        return PrinterStatus(
            state=PrinterState.ERROR,
            detail="Not configured",
            job_file=None,
            progress=None,
            print_time_s=None,
            print_time_left_s=None,
            temperatures={},
            error=self.reason,
        )

    def _refuse(self, *_args) -> None:
        raise ConnectorError(self.reason)

    def upload(self, local_path: Path, remote_name: str) -> RemoteFile:
        raise ConnectorError(self.reason)

    def file_info(self, remote_name: str) -> RemoteFile | None:
        raise ConnectorError(self.reason)

    download = start = delete = _refuse

    def pause(self) -> None:
        self._refuse()

    def resume(self) -> None:
        self._refuse()

    def cancel(self) -> None:
        self._refuse()
