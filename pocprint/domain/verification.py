"""What proves that the printer printed the approved file: each connector kind names its
evidence, and records, PDFs, labels and the release say which one a build has.

Only OctoPrint reports a hash of the file it holds. A manual printer has no network: pocprint
checks the G-code's SHA-256 when it hands the file out, and the technician confirms that the
file started at the printer is that download. Neither is called the other.
"""

from __future__ import annotations

from enum import StrEnum


class Evidence(StrEnum):
    PRINTER_SHA1 = "printer_sha1"
    TECHNICIAN_CONFIRMED_DOWNLOAD = "technician_confirmed_download"
    # Manual builds recorded before the technician's confirmation named the file (0010).
    MANUAL_START_BEFORE_0010 = "manual_start_before_0010"

    @property
    def label(self) -> str:
        return {
            "printer_sha1": "the printer's own SHA-1 of the file it printed, equal to the "
            "approved G-code's",
            "technician_confirmed_download": "the technician confirmed printing the G-code "
            "downloaded from pocprint, whose SHA-256 pocprint checked at download (the printer "
            "itself reports nothing)",
            "manual_start_before_0010": "the technician confirmed the start after a "
            "hash-checked download (recorded before the confirmation named the file; the "
            "printer itself reports nothing)",
        }[self.value]


def print_verification(printer_sha1: str | None, printer_report: dict | None) -> dict | None:
    """{evidence, label, value} for a build, or None when nothing verified the file."""
    report = printer_report or {}
    confirmed = report.get("verification") or {}
    if confirmed.get("evidence") == Evidence.TECHNICIAN_CONFIRMED_DOWNLOAD:
        evidence = Evidence.TECHNICIAN_CONFIRMED_DOWNLOAD
        value = confirmed.get("gcode_sha256")
    elif "manual" in report:
        evidence, value = Evidence.MANUAL_START_BEFORE_0010, printer_sha1
    elif printer_sha1:
        evidence, value = Evidence.PRINTER_SHA1, printer_sha1
    else:
        return None
    return {
        "evidence": evidence.value,
        "label": evidence.label,
        "value": value,
        "confirmed_by": confirmed.get("confirmed_by"),
        "confirmed_at": confirmed.get("confirmed_at"),
    }
