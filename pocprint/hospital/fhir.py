"""FHIR R4 orders: a ServiceRequest from the hospital's order system becomes pocprint's order
fields, and a case's progress is answered as a Task. Validated with `fhir.resources` (its R4B
models: R4B changed nothing in ServiceRequest, Task or OperationOutcome that pocprint reads).

How a ServiceRequest maps (the README has the table):
- `code`: CPT 0559T/0560T (anatomic model) or 0561T/0562T (surgical guide), or
  `urn:pocprint:device-type` anatomical_model | surgical_guide -> device type
- `reasonCode`: text (or a coding's display) -> indication; an ICD-10 coding -> ICD-10 code
- `occurrenceDateTime` or `occurrencePeriod.end` -> needed-by date
- `requester`: display, or a contained Practitioner's name and phone -> ordering clinician
- `supportingInfo`: a contained ImagingStudy (study UID, accession "ACSN", series) -> imaging;
  the accession number goes with the encrypted identifiers, and is dropped where the site
  keeps none
- `subject`: the identifier in the lab's patient-code system -> pseudonymous patient code; a
  contained Patient's name, record number ("MR") and birth date go only to the encrypted
  identifiers, where the site keeps them
- `category` urn:pocprint:intended-use, `bodySite` urn:pocprint:anatomy (+ laterality),
  `orderDetail` urn:pocprint:diagnostic-use | material | regulatory-route
- `identifier` (first with system and value) -> the hospital's order reference
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

CPT = "http://www.ama-assn.org/go/cpt"
DEVICE_TYPE = "urn:pocprint:device-type"
INTENDED_USE = "urn:pocprint:intended-use"
DIAGNOSTIC_USE = "urn:pocprint:diagnostic-use"
MATERIAL = "urn:pocprint:material"
ROUTE = "urn:pocprint:regulatory-route"
ANATOMY = "urn:pocprint:anatomy"
LATERALITY = "urn:pocprint:laterality"
CASE_SYSTEM = "urn:pocprint:case"
DEVICE_SYSTEM = "urn:pocprint:device"
SNOMED = "http://snomed.info/sct"
SNOMED_SIDES = {"7771000": "left", "24028007": "right", "51440002": "bilateral"}
CPT_DEVICES = {
    "0559T": "anatomical_model",
    "0560T": "anatomical_model",
    "0561T": "surgical_guide",
    "0562T": "surgical_guide",
}
# Where each order field comes from, for problems the order rules find.
FIELD_PATHS = {
    "patient_code": "ServiceRequest.subject",
    "indication": "ServiceRequest.reasonCode",
    "icd10_code": "ServiceRequest.reasonCode",
    "device_type": "ServiceRequest.code",
    "needed_by": "ServiceRequest.occurrence",
    "procedure_date": "ServiceRequest.occurrence",
    "ordering_clinician": "ServiceRequest.requester",
    "ordering_contact": "ServiceRequest.requester",
    "intended_use": "ServiceRequest.category",
    "diagnostic_use": "ServiceRequest.orderDetail",
    "material": "ServiceRequest.orderDetail",
    "regulatory_route": "ServiceRequest.orderDetail",
    "anatomy": "ServiceRequest.bodySite",
    "accession_number": "ServiceRequest.supportingInfo",
    "modality": "ServiceRequest.supportingInfo",
    "slice_thickness_mm": "ServiceRequest.supportingInfo",
}


@dataclass(frozen=True)
class Issue:
    path: str
    message: str
    code: str = "invalid"  # FHIR issue type: invalid, required, structure, value, duplicate...


@dataclass
class FhirOrder:
    order: dict = field(default_factory=dict)
    identifiers: dict | None = None
    imaging: dict | None = None
    reference: str | None = None
    issues: list[Issue] = field(default_factory=list)


def _codings(concept) -> list[dict]:
    return [c for c in (concept or {}).get("coding") or [] if isinstance(c, dict)]


def _code(concepts, system: str) -> str | None:
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        for coding in _codings(concept):
            if coding.get("system") == system and coding.get("code"):
                return str(coding["code"])
    return None


def _date(text) -> date | None:
    if not isinstance(text, str) or len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _contained(resource: dict, reference, kind: str) -> dict | None:
    ref = (reference or {}).get("reference") if isinstance(reference, dict) else None
    if not ref or not ref.startswith("#"):
        return None
    for item in resource.get("contained") or []:
        if (
            isinstance(item, dict)
            and item.get("resourceType") == kind
            and item.get("id") == ref[1:]
        ):
            return item
    return None


def _human_name(names) -> str:
    for name in names or []:
        if name.get("text"):
            return str(name["text"])
        words = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family", "")]
        return " ".join(w for w in words if w)
    return ""


def validation_issues(body: dict) -> list[Issue]:
    """What FHIR R4 itself says is wrong with the resource (fhir.resources, all at once)."""
    try:
        ServiceRequest.model_validate(body)
    except ValidationError as exc:
        return [
            Issue(
                "ServiceRequest." + ".".join(str(p) for p in err["loc"]),
                err["msg"].removeprefix("Value error, "),
                "structure" if err["type"] in ("extra_forbidden", "missing") else "value",
            )
            for err in exc.errors()
        ]
    return []


def read_service_request(body, patient_code_system: str, keep_identity: bool) -> FhirOrder:
    """The order fields of a ServiceRequest, and every problem found while reading it."""
    out = FhirOrder()
    if not isinstance(body, dict) or body.get("resourceType") != "ServiceRequest":
        out.issues.append(
            Issue("ServiceRequest", "the body must be a FHIR ServiceRequest (JSON)", "structure")
        )
        return out
    out.issues += validation_issues(body)
    if body.get("status") != "active":
        out.issues.append(
            Issue("ServiceRequest.status", "only an active order can be received", "business-rule")
        )
    if body.get("intent") not in ("order", "original-order"):
        out.issues.append(
            Issue(
                "ServiceRequest.intent", "intent must be order (or original-order)", "business-rule"
            )
        )
    order = out.order
    for identifier in body.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            out.reference = f"{identifier['system']}|{identifier['value']}"[:255]
            break
    _subject(body, patient_code_system, keep_identity, out)
    codes = [
        CPT_DEVICES.get(c.get("code")) for c in _codings(body.get("code")) if c.get("system") == CPT
    ]
    order["device_type"] = _code(body.get("code"), DEVICE_TYPE) or next(
        (c for c in codes if c), None
    )
    if not order["device_type"]:
        out.issues.append(
            Issue(
                "ServiceRequest.code",
                "code must name an anatomic model or guide (CPT 0559T-0562T or urn:pocprint:device-type)",
                "required",
            )
        )
    reasons = body.get("reasonCode") or []
    first = reasons[0] if reasons and isinstance(reasons[0], dict) else {}
    order["indication"] = first.get("text") or next(
        (c.get("display") for c in _codings(first) if c.get("display")), ""
    )
    order["icd10_code"] = next(
        (
            c.get("code")
            for r in reasons
            for c in _codings(r)
            if "icd-10" in str(c.get("system", "")).lower()
        ),
        None,
    )
    order["needed_by"] = _date(
        body.get("occurrenceDateTime") or (body.get("occurrencePeriod") or {}).get("end")
    )
    if order["needed_by"] is None:
        out.issues.append(
            Issue(
                "ServiceRequest.occurrence",
                "the needed-by date is required (occurrenceDateTime or occurrencePeriod.end)",
                "required",
            )
        )
    _requester(body, order)
    order["intended_use"] = _code(body.get("category") or [], INTENDED_USE) or ""
    details = body.get("orderDetail") or []
    use = _code(details, DIAGNOSTIC_USE)
    order["diagnostic_use"] = {"yes": True, "no": False}.get(use or "")
    order["material"] = _code(details, MATERIAL) or ""
    order["regulatory_route"] = _code(details, ROUTE) or ""
    order["anatomy"] = _anatomy(body.get("bodySite") or [])
    _imaging(body, out, keep_identity)
    return out


def _subject(body: dict, system: str, keep_identity: bool, out: FhirOrder) -> None:
    subject = body.get("subject") or {}
    patient = _contained(body, subject, "Patient") or {}
    identifiers = [subject.get("identifier")] + list(patient.get("identifier") or [])
    code = next(
        (i.get("value") for i in identifiers if isinstance(i, dict) and i.get("system") == system),
        None,
    )
    out.order["patient_code"] = code or ""
    if not code:
        out.issues.append(
            Issue(
                "ServiceRequest.subject",
                f"the pseudonymous patient code is required: an identifier with system {system}",
                "required",
            )
        )
    if keep_identity and patient:
        record = next(
            (
                i.get("value")
                for i in patient.get("identifier") or []
                if _code(i.get("type") or {}, "http://terminology.hl7.org/CodeSystem/v2-0203")
                == "MR"
            ),
            None,
        )
        values = {
            "name": _human_name(patient.get("name")),
            "record_number": record or "",
            "birth_date": patient.get("birthDate", ""),
        }
        out.identifiers = {k: v for k, v in values.items() if v} or None


def _requester(body: dict, order: dict) -> None:
    requester = body.get("requester") or {}
    who = (
        _contained(body, requester, "Practitioner")
        or _contained(body, requester, "PractitionerRole")
        or {}
    )
    order["ordering_clinician"] = _human_name(who.get("name")) or requester.get("display") or ""
    phones = [
        t.get("value") for t in who.get("telecom") or [] if t.get("system") in ("phone", "pager")
    ]
    order["ordering_contact"] = phones[0] if phones else ""


def _anatomy(sites: list) -> list[dict]:
    parts = []
    for site in sites:
        code = _code(site, ANATOMY)
        if not code:
            continue
        region, subregion, structure = (code.split("|") + ["", "", ""])[:3]
        side = _code(site, LATERALITY) or SNOMED_SIDES.get(_code(site, SNOMED) or "", "")
        parts.append(
            {
                "region": region,
                "subregion": subregion,
                "structure": structure,
                "laterality": side,
                "comment": "",
            }
        )
    return parts


def _imaging(body: dict, out: FhirOrder, keep_identity: bool) -> None:
    study = None
    for info in body.get("supportingInfo") or []:
        study = _contained(body, info, "ImagingStudy")
        if study:
            break
    if not study:
        return
    uid = next(
        (
            str(i.get("value", "")).removeprefix("urn:oid:")
            for i in study.get("identifier") or []
            if i.get("system") == "urn:dicom:uid"
        ),
        None,
    )
    accession = next(
        (
            i.get("value")
            for i in study.get("identifier") or []
            if _code(i.get("type") or {}, "http://terminology.hl7.org/CodeSystem/v2-0203") == "ACSN"
        ),
        None,
    )
    series = [
        {
            "uid": s.get("uid"),
            "number": s.get("number"),
            "description": s.get("description", ""),
            "modality": (s.get("modality") or {}).get("code", ""),
            "body_part": (s.get("bodySite") or {}).get("code", ""),
            "instances": s.get("numberOfInstances"),
        }
        for s in study.get("series") or []
        if isinstance(s, dict) and s.get("uid")
    ]
    modalities = [m.get("code") for m in study.get("modality") or [] if m.get("code")]
    if accession and keep_identity:  # it leads to the patient in the RIS: kept like identity
        out.order["accession_number"] = accession
    if modalities:
        out.order["modality"] = modalities[0]
    if uid:
        out.imaging = {
            "study_instance_uid": uid,
            "study_date": _date(study.get("started")),
            "body_part": next((s["body_part"] for s in series if s["body_part"]), None),
            "imaging_series": series,
            "source_series_uid": series[0]["uid"] if len(series) == 1 else None,
            "imaging_source": "FHIR ServiceRequest"
            + (f" {out.reference}" if out.reference else ""),
        }


def outcome(issues: list[Issue]) -> dict:
    """An OperationOutcome listing every issue (validated by fhir.resources itself)."""
    resource = OperationOutcome(
        issue=[
            {"severity": "error", "code": i.code, "diagnostics": i.message, "expression": [i.path]}
            for i in issues
        ]
    )
    return resource.model_dump(mode="json", exclude_none=True)


def task_status(review_status: str, position_status: str, step: str) -> str:
    """FHIR Task.status for where a case is (domain/case_flow.py)."""
    if position_status == "stopped":
        return "rejected"
    if review_status == "info_requested" or position_status == "held":
        return "on-hold"
    if position_status == "done":
        return "completed"
    if step in ("order", "review"):
        return "received"
    return "in-progress"


def task(
    case: dict, position: dict, devices: list[dict], patient_code_system: str, now: datetime
) -> dict:
    """The case as a FHIR Task: status, the step in words, and the devices built so far."""
    status = task_status(case["review_status"], position["status"], position["step"])
    resource = {
        "resourceType": "Task",
        "id": case["code"],
        "identifier": [{"system": CASE_SYSTEM, "value": case["code"]}],
        "status": status,
        "businessStatus": {"text": f"{position['label']}: {position['summary']}"},
        "intent": "order",
        "for": {"identifier": {"system": patient_code_system, "value": case["patient_code"]}},
        "authoredOn": case["created_at"],
        "lastModified": now.isoformat(),
        "output": [
            {
                "type": {"text": "device"},
                "valueIdentifier": {"system": DEVICE_SYSTEM, "value": d["serial"]},
            }
            for d in devices
        ],
    }
    if status == "rejected":
        resource["statusReason"] = {"text": position["summary"]}
    if case.get("order_reference"):
        system, _, value = case["order_reference"].partition("|")
        resource["basedOn"] = [
            {"type": "ServiceRequest", "identifier": {"system": system, "value": value}}
        ]
    if not resource["output"]:
        del resource["output"]
    return Task.model_validate(resource).model_dump(mode="json", exclude_none=True)
