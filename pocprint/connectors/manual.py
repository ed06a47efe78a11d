"""Manual connector: a printer without a network API (many resin and older FFF printers).

pocprint cannot upload to, start or watch such a printer. The technician downloads the
verified G-code from the board, starts the print on the machine and confirms the start and
the end on the tablet (services/manual_printing.py records who and when). This connector
only says so, clearly, whenever something tries to drive the printer over a network.
"""

from __future__ import annotations

from pathlib import Path

from pocprint.connectors.base import ConnectorError, PrinterState, PrinterStatus, RemoteFile
from pocprint.domain.verification import Evidence

MANUAL_DETAIL = "Manual printer"


class ManualOperation(ConnectorError):
    """The action must be done by the technician at the printer."""


class ManualConnector:
    """PrinterConnector for a printer driven by hand; its state is what technicians record."""

    manual = True
    #: no hash from the printer: the technician confirms the hash-checked download was printed
    evidence = Evidence.TECHNICIAN_CONFIRMED_DOWNLOAD

    def status(self) -> PrinterStatus:
        return PrinterStatus(state=PrinterState.IDLE, detail=MANUAL_DETAIL)

    def _refuse(self, what: str):
        raise ManualOperation(
            f"this printer has no network connection: {what} at the printer and confirm it "
            "on the tablet"
        )

    def upload(self, local_path: Path, remote_name: str) -> RemoteFile:
        self._refuse("download the G-code from the board, copy it")

    def file_info(self, remote_name: str) -> RemoteFile | None:
        return None

    def download(self, remote_name: str, dest: Path) -> None:
        self._refuse("read the file")

    def start(self, remote_name: str) -> None:
        self._refuse("start the print")

    def pause(self) -> None:
        self._refuse("pause the print")

    def resume(self) -> None:
        self._refuse("resume the print")

    def cancel(self) -> None:
        self._refuse("stop the print")

    def delete(self, remote_name: str) -> None:
        return None
