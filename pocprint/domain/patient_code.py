"""The pseudonymous patient code: a site's own pattern, and never something that leads back
to the patient (a record number typed by mistake, the patient's name, or the record number or
name stored encrypted with the case)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Kept in step with pocprint/config.py (the site may replace both in [identifiers]).
DEFAULT_PATTERN = r"[A-Za-z]{1,8}-(?=[A-Za-z0-9-]*[0-9])[A-Za-z0-9][A-Za-z0-9-]{0,22}"
DEFAULT_HINT = (
    "a letter prefix, a dash, then letters and digits with at least one digit, e.g. PX-0001"
)
MAX_LENGTH = 64  # the column's size
# Name parts shorter than this are too common inside codes to be refused ("Li", "Ng").
MIN_NAME_PART = 3
MIN_RECORD_DIGITS = 4


@dataclass(frozen=True)
class CodeRules:
    pattern: str = DEFAULT_PATTERN
    hint: str = DEFAULT_HINT
    record_number_digits: tuple[int, int] = (6, 12)


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", (text or "").casefold())


def patient_code_problems(
    code: str, rules: CodeRules = CodeRules(), identifiers: dict | None = None
) -> list[str]:
    """Every problem of a patient code, as sentences (empty: acceptable). `identifiers` are the
    case's decrypted identifiers (name, record_number), when the site stores them."""
    code = (code or "").strip()
    if not code:
        return ["patient code is required (the lab's pseudonymous code, never a name)"]
    if len(code) > MAX_LENGTH or not re.fullmatch(rules.pattern, code):
        return [f"patient code must be this lab's pseudonymous code: {rules.hint}"]
    problems = []
    digits = re.sub(r"[\s./-]", "", code)
    low, high = rules.record_number_digits
    if digits.isdigit() and low <= len(digits) <= high:
        problems.append(
            "patient code is all digits of a record number's length: use the pseudonymous "
            "code, never the record number"
        )
    flat = _alnum(code)
    ids = identifiers or {}
    record = _alnum(ids.get("record_number") or "")
    if len(record) >= MIN_RECORD_DIGITS and record in flat:
        problems.append("patient code contains the patient's record number")
    name = ids.get("name") or ""
    parts = [_alnum(p) for p in re.split(r"[\s,.'-]+", name)]
    whole = _alnum(name)
    if (len(whole) >= MIN_NAME_PART and whole in flat) or any(
        len(p) >= MIN_NAME_PART and p in flat for p in parts
    ):
        problems.append("patient code contains the patient's name")
    return problems
