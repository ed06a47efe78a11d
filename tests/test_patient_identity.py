"""Patient identity (issue 14): the site's pseudonymous code pattern, codes that are record
numbers or contain the patient's stored name or record number, the accession number kept
encrypted and bound to signatures by its keyed hash, and coded anatomy on labels."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from sqlmodel import select

from pocprint.domain.patient_code import CodeRules, patient_code_problems
from pocprint.reads.records import device_record
from pocprint.services import cases, gate, identifiers, review
from pocprint.services.errors import Invalid
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import AuditEvent, BuildJob, Case, Part, Signature
from pocprint.trace.labels import label_data
from pocprint.trace.site import Site

from conftest import PASSWORD, USUAL_SCENARIO, order_fields
from trace_helpers import printed_device

JANE = {"name": "Jane Doe", "record_number": "00123456", "birth_date": "1970-01-02"}


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("DoeJane", "pseudonymous code"),  # a name has no structure of a code
        ("Jane Doe", "pseudonymous code"),
        ("12345678", "pseudonymous code"),  # an MRN typed into the field
        ("PX-", "pseudonymous code"),
        ("PX-ABCD", "pseudonymous code"),  # no digit: could be a name
    ],
)
def test_the_default_pattern_refuses_names_and_numbers(code, problem):
    assert problem in patient_code_problems(code)[0]


def test_the_default_pattern_accepts_codes():
    for code in ("PX-0001", "VASC-24A17", "px-7", "ORTHO-2026-0042"):
        assert patient_code_problems(code) == [], code


def test_a_site_pattern_and_record_number_lengths():
    rules = CodeRules(
        pattern=r"\d{3}-\d{8}|[A-Z]{2}\d{4}",
        hint="the lab book number",
        record_number_digits=(8, 12),
    )
    assert patient_code_problems("AB1234", rules) == []
    assert "the lab book number" in patient_code_problems("PX-0001", rules)[0]
    # all digits of a record number's length, even with separators: refused
    assert "all digits" in patient_code_problems("123-45678901", rules)[0]


def test_codes_containing_the_stored_name_or_record_number_are_refused():
    assert "record number" in " ".join(patient_code_problems("PX-00123456", identifiers=JANE))
    assert "name" in " ".join(patient_code_problems("DOE-1", identifiers=JANE))
    assert "name" in " ".join(patient_code_problems("PX-JANE7", identifiers=JANE))
    assert patient_code_problems("PX-0042", identifiers=JANE) == []


def test_an_order_is_refused_when_its_code_contains_the_identifiers(lab, people):
    tech = people["tech"]
    with pytest.raises(Invalid) as refused:
        cases.create_case(
            lab, tech, patient_identifiers=JANE, **order_fields(patient_code="DOE-77")
        )
    assert "patient_code" in refused.value.fields
    case_id = cases.create_case(lab, tech, patient_identifiers=JANE, **order_fields())
    # An edit is checked against the identifiers stored (encrypted) with the case.
    with pytest.raises(Invalid, match="record number"):
        cases.update_case(lab, tech, case_id, patient_code="PX-00123456")


def test_the_accession_number_is_encrypted_and_signatures_bind_its_keyed_hash(lab, people):
    tech, rad = people["tech"], people["rad"]
    case_id = cases.create_case(lab, tech, **order_fields(accession_number="acc 4711-x"))
    with read_session(lab.engine) as s:
        case = s.get(Case, case_id)
    assert case.accession_number is None and case.accession_hmac
    assert case.accession_hmac == identifiers.keyed_hash(lab.settings, "ACC 4711-X")
    # Nowhere in clear: not in the row, not in the audit trail, not in the signed content.
    review.review_case(
        lab, rad, case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
    )
    with read_session(lab.engine) as s:
        rows = [json.dumps(r.model_dump(), default=str) for r in s.exec(select(AuditEvent)).all()]
        rows += [json.dumps(r.model_dump(), default=str) for r in s.exec(select(Signature)).all()]
        rows.append(json.dumps(s.get(Case, case_id).model_dump(), default=str))
        signed = s.exec(select(Signature)).one().content
    assert not [r for r in rows if "4711" in r]
    assert signed["order"]["imaging"]["accession_number"] == f"hmac-sha256:{case.accession_hmac}"
    # Those allowed read it back (audited); a changed number voids the review signature.
    assert cases.read_identifiers(lab, rad, case_id)["accession_number"] == "ACC 4711-X"
    cases.update_case(lab, tech, case_id, accession_number="ACC 4712")
    with read_session(lab.engine) as s:
        case = s.get(Case, case_id)
        step = gate.review_step(s, case)
    assert case.review_status == "awaiting_review"
    assert not step.valid
    # An edit that leaves the accession number out keeps it.
    cases.update_case(lab, tech, case_id, indication="Aneurysm, endograft planning (revised)")
    assert cases.read_identifiers(lab, rad, case_id)["accession_number"] == "ACC 4712"


def test_without_an_identifiers_key_no_accession_number_is_taken(lab, people):
    lab.settings = lab.settings.with_(identifiers_key=None)
    with pytest.raises(Invalid) as refused:
        cases.create_case(lab, people["tech"], **order_fields(accession_number="ACC-1"))
    assert "accession_number" in refused.value.fields
    assert cases.create_case(lab, people["tech"], **order_fields())


def test_accession_numbers_stored_in_clear_before_0010_are_sealed_at_start(lab, people):
    case_id = cases.create_case(lab, people["tech"], **order_fields())
    with unit_of_work(lab.engine) as s:  # as a pre-0010 database holds it
        s.connection().execute(
            sa.text("UPDATE lab_case SET accession_number = 'OLD-99' WHERE id = :id"),
            {"id": case_id},
        )
    assert identifiers.seal_plain_accessions(lab.settings, lab.engine) == 1
    with read_session(lab.engine) as s:
        case = s.get(Case, case_id)
        sealed = s.exec(
            select(AuditEvent).where(AuditEvent.action == "case.accession_sealed")
        ).one()
    assert case.accession_number is None and case.accession_hmac
    assert "OLD-99" not in json.dumps(sealed.after)
    assert cases.read_identifiers(lab, people["rad"], case_id)["accession_number"] == "OLD-99"
    assert identifiers.seal_plain_accessions(lab.settings, lab.engine) == 0


def test_labels_carry_the_coded_anatomy_never_the_free_text_part_label(lab, people, tmp_path):
    job_id = printed_device(lab, people, tmp_path)
    with unit_of_work(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        s.get(Part, job.part_id).label = "Jane Doe left jaw"
        serial = job.serial
    with read_session(lab.engine) as s:
        record = device_record(s, serial)
    label = label_data(record, f"https://lab.example/devices/{serial}", Site(name="Lab"))
    assert "Jane" not in label.description and "Doe" not in label.description
    assert label.description == "Surgical guide: Head - Face - Mandible (left)"
