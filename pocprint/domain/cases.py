"""What an order (case) must contain to be accepted."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pocprint.domain.patient_code import CodeRules, patient_code_problems


class DeviceType(StrEnum):
    ANATOMICAL_MODEL = "anatomical_model"
    SURGICAL_GUIDE = "surgical_guide"

    @property
    def label(self) -> str:
        return {"anatomical_model": "Anatomical model", "surgical_guide": "Surgical guide"}[
            self.value
        ]


def case_field_problems(
    patient_code: str,
    indication: str,
    device_type: str,
    needed_by: date | None,
    today: date,
    code_rules: CodeRules = CodeRules(),
    identifiers: dict | None = None,
) -> list[tuple[str, str]]:
    """(field, message) for each problem, so a form can show each beside its field."""
    problems = [
        ("patient_code", m) for m in patient_code_problems(patient_code, code_rules, identifiers)
    ]
    if not (indication or "").strip():
        problems.append(("indication", "indication is required"))
    elif len(indication) > 2000:
        problems.append(("indication", "indication is longer than 2000 characters"))
    if device_type not in {t.value for t in DeviceType}:
        problems.append(("device_type", "device type must be anatomical model or surgical guide"))
    if needed_by is None:
        problems.append(("needed_by", "needed-by date is required"))
    elif needed_by < today:
        problems.append(("needed_by", "needed-by date is in the past"))
    return problems


def case_problems(
    patient_code: str, indication: str, device_type: str, needed_by: date | None, today: date
) -> list[str]:
    return [
        m for _f, m in case_field_problems(patient_code, indication, device_type, needed_by, today)
    ]


class IntendedUse(StrEnum):
    SURGICAL_PLANNING = "surgical_planning"
    INTRAOPERATIVE_GUIDE = "intraoperative_guide"
    PATIENT_COMMUNICATION = "patient_communication"
    EDUCATION = "education"

    @property
    def label(self) -> str:
        return (
            self.value.replace("_", " ").replace("intraoperative", "intra-operative").capitalize()
        )


class RegulatoryRoute(StrEnum):
    """Selects the documents a case needs (DOMAIN.md section 4)."""

    IN_HOUSE = "in_house"  # EU MDR Art. 5(5)
    CUSTOM_MADE = "custom_made"  # EU MDR Art. 2(3), Annex XIII: needs a prescription
    MANUFACTURER_SYSTEM = "manufacturer_system"
    NOT_A_DEVICE = "not_a_device"

    @property
    def label(self) -> str:
        return {
            "in_house": "In-house device (MDR Art. 5(5))",
            "custom_made": "Custom-made device (MDR Art. 2(3))",
            "manufacturer_system": "Manufacturer's validated system",
            "not_a_device": "Not a medical device",
        }[self.value]


MODALITIES = ("CT", "MR", "US", "XA", "PT", "NM", "CBCT", "other")
SLICE_WARNING_MM = 2.0  # thicker CT slices lose the detail a model needs (DOMAIN.md section 8)


def order_field_problems(
    order: dict,
    today: date,
    materials: tuple[str, ...] | None = None,
    code_rules: CodeRules = CodeRules(),
    identifiers: dict | None = None,
) -> list[tuple[str, str]]:
    """Every problem of an order as (field, message), all at once. Not the anatomy taxonomy
    and ICD-10 format, which have their own modules. `materials`: the materials the lab has
    validated for the order's device type (None: not checked); `identifiers`: the patient's
    (decrypted) name and record number, which the patient code must not contain."""
    problems = case_field_problems(
        order.get("patient_code", ""),
        order.get("indication", ""),
        order.get("device_type", ""),
        order.get("needed_by"),
        today,
        code_rules,
        identifiers,
    )
    if not (order.get("ordering_clinician") or "").strip():
        problems.append(("ordering_clinician", "ordering clinician is required"))
    if order.get("intended_use") not in {u.value for u in IntendedUse}:
        problems.append(
            (
                "intended_use",
                "intended use must be surgical planning, intra-operative guide, "
                "patient communication or education",
            )
        )
    if not isinstance(order.get("diagnostic_use"), bool):
        problems.append(
            ("diagnostic_use", "say whether the model is for diagnostic use (yes or no)")
        )
    procedure = order.get("procedure_date")
    needed_by = order.get("needed_by")
    if procedure is not None and needed_by is not None and needed_by > procedure:
        problems.append(("needed_by", "needed-by date is after the procedure date"))
    modality = order.get("modality")
    if modality and modality not in MODALITIES:
        problems.append(("modality", f"modality must be one of {', '.join(MODALITIES)}"))
    thickness = order.get("slice_thickness_mm")
    if thickness is not None and not 0 < thickness <= 20:
        problems.append(("slice_thickness_mm", "slice thickness must be between 0 and 20 mm"))
    route = order.get("regulatory_route")
    if route not in {r.value for r in RegulatoryRoute}:
        problems.append(
            (
                "regulatory_route",
                "regulatory route must be in-house, custom-made, manufacturer or none",
            )
        )
    if route == RegulatoryRoute.CUSTOM_MADE:
        for field, label in (
            ("prescriber_name", "prescriber"),
            ("prescriber_qualification", "prescriber's qualification"),
            ("design_characteristics", "design characteristics set by the prescriber"),
        ):
            if not (order.get(field) or "").strip():
                problems.append((field, f"a custom-made device needs the {label}"))
    problems += material_problems(order.get("material"), order.get("device_type"), materials)
    for field, limit in (
        ("ordering_clinician", 200),
        ("ordering_contact", 100),
        ("accession_number", 64),
        ("segmentation_software", 100),
        ("segmentation_version", 50),
        ("prescriber_name", 200),
        ("prescriber_qualification", 200),
        ("design_characteristics", 4000),
    ):
        if len(order.get(field) or "") > limit:
            problems.append((field, f"{FIELD_LABELS[field]} is longer than {limit} characters"))
    return problems


def material_problems(
    material: str | None, device_type: str | None, materials: tuple[str, ...] | None
) -> list[tuple[str, str]]:
    """The order names the material (for a custom-made device this is the prescribed
    material): only validated combinations in it are sliced and dispatched."""
    material = (material or "").strip()
    what = (device_type or "device").replace("_", " ")
    if not material:
        return [("material", "choose the material the device is printed in")]
    if materials is not None and material.casefold() not in {m.casefold() for m in materials}:
        offered = ", ".join(materials) or "none"
        return [
            (
                "material",
                f"{material} is not validated for {what}s in this lab (validated: {offered})",
            )
        ]
    return []


def order_problems(order: dict, today: date, materials: tuple[str, ...] | None = None) -> list[str]:
    return [m for _f, m in order_field_problems(order, today, materials)]


# The order form's labels, also used in messages (never the field's program name).
FIELD_LABELS = {
    "patient_code": "patient code",
    "indication": "indication",
    "device_type": "device type",
    "needed_by": "needed-by date",
    "ordering_clinician": "ordering clinician",
    "ordering_contact": "phone or pager",
    "icd10_code": "ICD-10 code",
    "intended_use": "intended use",
    "diagnostic_use": "diagnostic use",
    "anatomy": "anatomy",
    "procedure_date": "procedure date",
    "accession_number": "accession number",
    "modality": "modality",
    "slice_thickness_mm": "slice thickness",
    "segmentation_software": "segmentation software",
    "segmentation_version": "software version",
    "regulatory_route": "regulatory route",
    "prescriber_name": "prescriber",
    "prescriber_qualification": "prescriber's qualification",
    "design_characteristics": "design characteristics",
    "material": "material",
}


def order_warnings(order: dict) -> list[str]:
    """Not refusals: things the reviewer must see."""
    warnings = []
    thickness = order.get("slice_thickness_mm")
    if thickness is not None and thickness > SLICE_WARNING_MM:
        warnings.append(
            f"slice thickness {thickness:g} mm is above {SLICE_WARNING_MM:g} mm: "
            "small structures may be lost in the model"
        )
    if order.get("diagnostic_use") and not (order.get("segmentation_software") or "").strip():
        warnings.append("diagnostic use: name the (cleared) segmentation software and version")
    return warnings
