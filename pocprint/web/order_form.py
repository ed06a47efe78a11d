"""Reading the order form into the fields services.cases.create_case takes."""

from __future__ import annotations

import json
from datetime import date

from werkzeug.datastructures import MultiDict

from pocprint.services.errors import Invalid

TEXT_FIELDS = (
    "patient_code",
    "indication",
    "device_type",
    "ordering_clinician",
    "ordering_contact",
    "icd10_code",
    "intended_use",
    "accession_number",
    "modality",
    "segmentation_software",
    "segmentation_version",
    "regulatory_route",
    "prescriber_name",
    "prescriber_qualification",
    "design_characteristics",
    "material",
)


def parse_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise Invalid(f"not a date: {text!r} (use YYYY-MM-DD)") from exc


class _Parsed:
    """Values read from the form, and what could not be read, by field (so one bad number
    does not hide the problems of the other fields)."""

    def __init__(self, form: MultiDict):
        self.form = form
        self.problems: dict[str, list[str]] = {}

    def date(self, name: str, label: str) -> date | None:
        text = (self.form.get(name) or "").strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            self.problems.setdefault(name, []).append(f"{label}: not a date")
            return None

    def number(self, name: str, label: str) -> float | None:
        text = (self.form.get(name) or "").strip()
        if not text:
            return None
        try:
            return float(text.replace(",", "."))
        except ValueError:
            self.problems.setdefault(name, []).append(f"{label} must be a number in mm")
            return None


def _yes_no(text: str | None) -> bool | None:
    return {"yes": True, "no": False}.get((text or "").strip().lower())


def anatomy_from(form: MultiDict) -> list[dict]:
    """Rows of the anatomy table: `anatomy_code` is "region|subregion|structure"."""
    parts = []
    codes = form.getlist("anatomy_code")
    sides = form.getlist("anatomy_laterality")
    comments = form.getlist("anatomy_comment")
    for i, code in enumerate(codes):
        if not code.strip():
            continue
        region, subregion, structure = (code.split("|") + ["", "", ""])[:3]
        parts.append(
            {
                "region": region,
                "subregion": subregion,
                "structure": structure,
                "laterality": sides[i] if i < len(sides) else "",
                "comment": comments[i] if i < len(comments) else "",
            }
        )
    return parts


def order_from(form: MultiDict) -> dict:
    order, problems = order_and_problems(form)
    if problems:
        raise Invalid("; ".join(m for ms in problems.values() for m in ms), fields=problems)
    return order


def order_and_problems(form: MultiDict) -> tuple[dict, dict[str, list[str]]]:
    """The order's fields, and the fields that could not be read (bad date or number)."""
    parsed = _Parsed(form)
    order = {name: form.get(name, "") for name in TEXT_FIELDS}
    order["icd10_code"] = order["icd10_code"] or None
    order["needed_by"] = parsed.date("needed_by", "needed-by date")
    order["procedure_date"] = parsed.date("procedure_date", "procedure date")
    order["slice_thickness_mm"] = parsed.number("slice_thickness_mm", "slice thickness")
    order["diagnostic_use"] = _yes_no(form.get("diagnostic_use"))
    order["anatomy"] = anatomy_from(form)
    return order, parsed.problems


def identifiers_from(form: MultiDict) -> dict | None:
    values = {
        "name": form.get("identifier_name", ""),
        "record_number": form.get("identifier_record_number", ""),
        "birth_date": form.get("identifier_birth_date", ""),
    }
    return values if any(v.strip() for v in values.values()) else None


def form_of(case) -> MultiDict:
    """A case's order as the form's fields, to edit it."""
    # Never the accession number: it is stored encrypted (an empty field keeps it).
    pairs = [(n, getattr(case, n) or "") for n in TEXT_FIELDS if n != "accession_number"]
    for name in ("needed_by", "procedure_date"):
        value = getattr(case, name)
        pairs.append((name, value.isoformat() if value else ""))
    pairs.append(
        ("slice_thickness_mm", "" if case.slice_thickness_mm is None else case.slice_thickness_mm)
    )
    pairs.append(("diagnostic_use", "yes" if case.diagnostic_use else "no"))
    for part in case.anatomy or []:
        code = "|".join([part["region"], part["subregion"], part.get("structure", "")])
        pairs += [("anatomy_code", code), ("anatomy_laterality", part["laterality"])]
    return MultiDict([(k, str(v)) for k, v in pairs])


# The imaging study a PACS lookup put on the form (hidden fields; checked again on save).
IMAGING_TEXT = ("study_instance_uid", "body_part", "source_series_uid", "imaging_source")


def imaging_from(form: MultiDict) -> dict | None:
    """The looked-up study from the form's hidden fields; None for an order typed by hand."""
    if not (form.get("study_instance_uid") or "").strip():
        return None
    values: dict = {k: (form.get(k) or "").strip() or None for k in IMAGING_TEXT}
    values["study_date"] = parse_date((form.get("study_date") or "").strip() or None)
    try:
        values["imaging_series"] = json.loads(form.get("imaging_series") or "[]")
    except ValueError as exc:
        raise Invalid("the series list from the PACS lookup is damaged: look it up again") from exc
    return values


def lookup_form(form: MultiDict, lookup) -> MultiDict:
    """The form as typed, with what the PACS lookup found put into its fields."""
    filled = MultiDict(form)
    for key, value in lookup.fields.items():
        filled[key] = "" if value is None else str(value)
    for key in IMAGING_TEXT:
        filled[key] = lookup.imaging.get(key) or ""
    study_date = lookup.imaging.get("study_date")
    filled["study_date"] = study_date.isoformat() if study_date else ""
    filled["imaging_series"] = json.dumps(lookup.imaging.get("imaging_series") or [])
    for key, value in (lookup.identifiers or {}).items():
        filled[f"identifier_{key}"] = value
    return filled
