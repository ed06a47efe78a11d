"""FHIR R4 orders through the real HTTP API: a ServiceRequest (validated with fhir.resources)
becomes a case, every problem comes back at once as an OperationOutcome and nothing is
stored; the case's progress reads back as a Task; role checks as everywhere in the API."""

from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.task import Task
from sqlmodel import select

from pocprint.services import review
from pocprint.services.cases import read_identifiers
from pocprint.services.tokens import create_api_token
from pocprint.store.db import read_session
from pocprint.store.models import AuditEvent, Case, Notification
from pocprint.web import create_app

from conftest import PASSWORD, USUAL_SCENARIO

PATIENT_SYSTEM = "urn:pocprint:patient-code"
STUDY_UID = "1.2.826.0.1.3680043.8.498.1234567890"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1234567891"


def service_request(**changes) -> dict:
    """A complete order for a 3D printed aorta model, as a hospital order system sends it."""
    needed = (date.today() + timedelta(days=6)).isoformat()
    body = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "urn:oid:1.2.3.4.5.placer", "value": "ORD-778899"}],
        "status": "active",
        "intent": "order",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "pat",
                "identifier": [
                    {"system": PATIENT_SYSTEM, "value": "PX-8801"},
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                    "code": "MR",
                                }
                            ]
                        },
                        "system": "urn:oid:1.2.3.4.5.mrn",
                        "value": "MRN-1122334455",
                    },
                ],
                "name": [{"family": "Mustermann", "given": ["Erika"]}],
                "birthDate": "1961-02-03",
            },
            {
                "resourceType": "Practitioner",
                "id": "req",
                "name": [{"family": "Vascular", "given": ["Anna"], "prefix": ["Dr"]}],
                "telecom": [{"system": "phone", "value": "ext 4711"}],
            },
            {
                "resourceType": "ImagingStudy",
                "id": "ct",
                "status": "available",
                "subject": {"reference": "#pat"},
                "identifier": [
                    {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"},
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                    "code": "ACSN",
                                }
                            ]
                        },
                        "value": "ACC-5544",
                    },
                ],
                "started": "2026-11-30T09:15:00Z",
                "modality": [
                    {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}
                ],
                "series": [
                    {
                        "uid": SERIES_UID,
                        "number": 3,
                        "description": "Arterial 1 mm",
                        "modality": {
                            "system": "http://dicom.nema.org/resources/ontology/DCM",
                            "code": "CT",
                        },
                        "bodySite": {"system": SNOMED, "code": "818981001", "display": "Abdomen"},
                        "numberOfInstances": 412,
                    }
                ],
            },
        ],
        "subject": {"reference": "#pat"},
        "requester": {"reference": "#req"},
        "code": {
            "coding": [
                {
                    "system": "http://www.ama-assn.org/go/cpt",
                    "code": "0559T",
                    "display": "Anatomic model 3D print",
                }
            ]
        },
        "category": [
            {"coding": [{"system": "urn:pocprint:intended-use", "code": "surgical_planning"}]}
        ],
        "orderDetail": [
            {"coding": [{"system": "urn:pocprint:diagnostic-use", "code": "no"}]},
            {"coding": [{"system": "urn:pocprint:material", "code": "PLA"}]},
            {"coding": [{"system": "urn:pocprint:regulatory-route", "code": "in_house"}]},
        ],
        "bodySite": [
            {
                "coding": [
                    {"system": "urn:pocprint:anatomy", "code": "Abdomen|Vessels|Abdominal aorta"},
                    {"system": "urn:pocprint:laterality", "code": "midline"},
                ]
            }
        ],
        "reasonCode": [
            {
                "coding": [
                    {"system": "http://hl7.org/fhir/sid/icd-10", "code": "I71.4", "display": "AAA"}
                ],
                "text": "Complex abdominal aortic aneurysm, endograft planning",
            }
        ],
        "occurrenceDateTime": needed,
        "supportingInfo": [{"reference": "#ct"}],
    }
    body.update(changes)
    return body


SNOMED = "http://snomed.info/sct"


@pytest.fixture
def api(lab, people):
    app = create_app(lab.settings, lab)
    client = app.test_client()

    def call(method, path, user="tech", **kwargs):
        token = create_api_token(lab, user)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        return client.open(path, method=method, headers=headers, **kwargs)

    return call


def _cases(lab):
    with read_session(lab.engine) as s:
        return s.exec(select(Case)).all()


def test_a_service_request_becomes_a_case_and_reads_back_as_a_task(api, lab, people):
    response = api("POST", "/api/v1/fhir/ServiceRequest", json=service_request())
    assert response.status_code == 201, response.get_json()
    assert response.mimetype == "application/fhir+json"
    task = Task.model_validate(response.get_json())  # a valid FHIR Task
    assert task.status == "received"
    (case,) = _cases(lab)
    assert response.headers["Location"].endswith(f"/api/v1/fhir/Task/{case.code}")
    assert case.patient_code == "PX-8801"
    assert case.device_type == "anatomical_model"
    assert case.indication == "Complex abdominal aortic aneurysm, endograft planning"
    assert case.icd10_code == "I71.4"
    assert case.needed_by == date.today() + timedelta(days=6)
    assert (
        case.ordering_clinician == "Dr Anna Vascular" or case.ordering_clinician == "Anna Vascular"
    )
    assert case.ordering_contact == "ext 4711"
    assert case.accession_number is None and case.modality == "CT"  # accession: encrypted
    assert case.study_instance_uid == STUDY_UID and case.source_series_uid == SERIES_UID
    assert case.imaging_source == "FHIR ServiceRequest urn:oid:1.2.3.4.5.placer|ORD-778899"
    assert case.anatomy[0]["structure"] == "Abdominal aorta"
    assert case.order_reference == "urn:oid:1.2.3.4.5.placer|ORD-778899"
    # Identity only in the encrypted identifiers (this site keeps them), never in the audit.
    assert read_identifiers(lab, people["rad"], case.id) == {
        "name": "Erika Mustermann",  # HumanName: prefix, given, family
        "record_number": "MRN-1122334455",
        "birth_date": "1961-02-03",
        "accession_number": "ACC-5544",
    }
    with read_session(lab.engine) as s:
        events = s.exec(select(AuditEvent)).all()
        notes = s.exec(select(Notification)).all()
    assert "Mustermann" not in str([(e.after, e.reason) for e in events])
    assert [n.event for n in notes] == ["awaiting_review"]
    # The review moves the Task on.
    review.review_case(
        lab, people["rad"], case.id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
    )
    task = api("GET", f"/api/v1/fhir/Task/{case.code}").get_json()
    assert Task.model_validate(task).status == "in-progress"
    assert task["businessStatus"]["text"].startswith("Mesh")
    assert task["basedOn"][0]["identifier"]["value"] == "ORD-778899"
    assert task["for"]["identifier"] == {"system": PATIENT_SYSTEM, "value": "PX-8801"}


def test_every_problem_is_reported_at_once_and_nothing_is_stored(api, lab):
    body = service_request(
        status="draft",
        occurrenceDateTime="2026-13-40",
        code={"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99999"}]},
        requester=None,
        bodySite=[
            {
                "coding": [
                    {"system": "urn:pocprint:anatomy", "code": "Abdomen|Vessels|Abdominal aorta"}
                ]
            }
        ],
        orderDetail=[{"coding": [{"system": "urn:pocprint:material", "code": "unobtainium"}]}],
        unknownElement=True,
    )
    del body["requester"]
    response = api("POST", "/api/v1/fhir/ServiceRequest", json=body)
    assert response.status_code == 422
    outcome = OperationOutcome.model_validate(response.get_json())
    paths = [issue.expression[0] for issue in outcome.issue]
    for expected in (
        "ServiceRequest.status",
        "ServiceRequest.occurrenceDateTime",  # FHIR itself: not a date
        "ServiceRequest.unknownElement",  # FHIR itself: no such element
        "ServiceRequest.code",
        "ServiceRequest.occurrence",
        "ServiceRequest.requester",
        "ServiceRequest.orderDetail",  # diagnostic use missing, material not validated
        "ServiceRequest.bodySite",  # the side of the part is missing
    ):
        assert expected in paths, (expected, paths)
    assert all(issue.severity == "error" for issue in outcome.issue)
    assert _cases(lab) == []
    with read_session(lab.engine) as s:
        assert s.exec(select(Notification)).all() == []


def test_not_a_service_request_and_not_json_are_clear(api, lab):
    for body in ({"resourceType": "Patient"}, [1, 2], "not json"):
        kwargs = {"data": body} if isinstance(body, str) else {"json": body}
        response = api("POST", "/api/v1/fhir/ServiceRequest", **kwargs)
        assert response.status_code == 422
        issue = response.get_json()["issue"][0]
        assert "FHIR ServiceRequest" in issue["diagnostics"]
    assert _cases(lab) == []


def test_the_same_hospital_order_opens_one_case(api, lab):
    assert api("POST", "/api/v1/fhir/ServiceRequest", json=service_request()).status_code == 201
    again = api("POST", "/api/v1/fhir/ServiceRequest", json=service_request())
    assert again.status_code == 409
    assert again.get_json()["issue"][0]["code"] == "duplicate"
    assert len(_cases(lab)) == 1


def test_roles_are_checked_like_the_rest_of_the_api(api, lab):
    forbidden = api("POST", "/api/v1/fhir/ServiceRequest", user="auditor", json=service_request())
    assert forbidden.status_code == 403
    assert forbidden.get_json()["resourceType"] == "OperationOutcome"
    assert _cases(lab) == []
    app_client = create_app(lab.settings, lab).test_client()
    anonymous = app_client.post("/api/v1/fhir/ServiceRequest", json=service_request())
    assert anonymous.status_code == 401
    assert api("GET", "/api/v1/fhir/Task/C2026-99999", user="auditor").status_code == 404


def test_without_an_identifiers_key_no_identity_is_kept(api, lab):
    lab.settings = lab.settings.with_(identifiers_key=None)
    body = copy.deepcopy(service_request())
    assert api("POST", "/api/v1/fhir/ServiceRequest", json=body).status_code == 201
    (case,) = _cases(lab)
    assert case.patient_identifiers is None
    assert case.accession_number is None and case.accession_hmac is None
