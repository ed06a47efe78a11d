"""What an order (case) must contain to be accepted."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum


class DeviceType(StrEnum):
    ANATOMICAL_MODEL = "anatomical_model"
    SURGICAL_GUIDE = "surgical_guide"

    @property
    def label(self) -> str:
        return {"anatomical_model": "Anatomical model", "surgical_guide": "Surgical guide"}[
            self.value
        ]


# A pseudonymous code: letters, digits and dashes, no spaces (so no "Jane Doe").
PATIENT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{2,31}$")


def case_problems(
    patient_code: str, indication: str, device_type: str, needed_by: date | None, today: date
) -> list[str]:
    problems = []
    if not PATIENT_CODE.match(patient_code or ""):
        problems.append(
            "patient code must be the pseudonymous code (3-32 letters, digits or dashes; "
            "never a name or record number with spaces)"
        )
    if not (indication or "").strip():
        problems.append("indication is required")
    elif len(indication) > 2000:
        problems.append("indication is longer than 2000 characters")
    if device_type not in {t.value for t in DeviceType}:
        problems.append("device type must be anatomical model or surgical guide")
    if needed_by is None:
        problems.append("needed-by date is required")
    elif needed_by < today:
        problems.append("needed-by date is in the past")
    return problems
