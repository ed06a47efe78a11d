"""ICD-10 code format (WHO ICD-10 and ICD-10-CM): checked for shape only, not against a code list."""

from __future__ import annotations

import re

# A letter, two characters (digit, then digit or letter), then optionally a dot and 1-4 more.
_ICD10 = re.compile(r"^[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?$")


def normalise_icd10(text: str | None) -> str | None:
    """Upper-case, trimmed, with the dot after the category; None when empty."""
    code = (text or "").strip().upper().replace(" ", "")
    if not code:
        return None
    if "." not in code and len(code) > 3:
        code = f"{code[:3]}.{code[3:]}"
    return code


def icd10_problem(text: str | None) -> str | None:
    code = normalise_icd10(text)
    if code is None or _ICD10.match(code):
        return None
    return (
        f"ICD-10 code {text!r} is not in the ICD-10 format "
        "(a letter, two characters, then optionally a dot and up to 4 more, e.g. I71.4)"
    )
