"""The imaging study an order names, as the PACS (or a FHIR order) described it: what must
hold before it is kept on the case. Never patient identity: that goes to the identifiers."""

from __future__ import annotations

import re
from datetime import date

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
IMAGING_FIELDS = (
    "study_instance_uid",
    "study_date",
    "body_part",
    "imaging_series",
    "source_series_uid",
    "imaging_source",
)
SERIES_KEYS = (
    "uid",
    "number",
    "description",
    "modality",
    "body_part",
    "slice_thickness_mm",
    "instances",
)


def _uid_problem(value, label: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64 or not UID.match(value):
        return f"{label} must be a DICOM UID (digits and dots, at most 64 characters)"
    return None


def imaging_problems(imaging: dict) -> list[tuple[str, str]]:
    """(field, message) for each problem of an imaging study, all at once."""
    problems = []
    unknown = set(imaging) - set(IMAGING_FIELDS)
    if unknown:
        problems.append(("imaging", f"unknown imaging fields: {', '.join(sorted(unknown))}"))
    for field, label in (("study_instance_uid", "study UID"), ("source_series_uid", "series UID")):
        if problem := _uid_problem(imaging.get(field), label):
            problems.append((field, problem))
    if imaging.get("study_date") is not None and not isinstance(imaging["study_date"], date):
        problems.append(("study_date", "study date must be a date"))
    for field, limit in (("body_part", 64), ("imaging_source", 200)):
        value = imaging.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            problems.append(
                (field, f"{field.replace('_', ' ')} is text of at most {limit} characters")
            )
    series = imaging.get("imaging_series") or []
    if not isinstance(series, list) or not all(
        isinstance(s, dict) and set(s) <= set(SERIES_KEYS) and not _uid_problem(s.get("uid"), "")
        for s in series
    ):
        problems.append(("imaging_series", "the series list is not as the PACS describes series"))
    elif (
        imaging.get("source_series_uid")
        and series
        and imaging["source_series_uid"] not in {s.get("uid") for s in series}
    ):
        problems.append(("source_series_uid", "the source series is not a series of the study"))
    if imaging.get("source_series_uid") and not imaging.get("study_instance_uid"):
        problems.append(("study_instance_uid", "a source series needs its study UID"))
    return problems
