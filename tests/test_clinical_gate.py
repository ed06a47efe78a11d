"""The clinical gate on a real database: orders, appropriateness review, segmentation
sign-off, design approval, signatures bound to content, withdrawals and the audit trail."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
import trimesh
from sqlmodel import select

from pocprint.services import cases as case_service
from pocprint.services import catalog, gate, review
from pocprint.services.errors import AuthFailed, Forbidden, Invalid, NotApproved, WrongState
from pocprint.services.identifiers import decrypt
from pocprint.services.mesh_processing import process_part
from pocprint.services.parts import confirm_units
from pocprint.services.slicing import slice_job
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import (
    AppropriatenessReview,
    AuditEvent,
    BuildJob,
    Case,
    Part,
    Signature,
)

from conftest import PASSWORD, USUAL_SCENARIO, order_fields

TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def events(lab, action: str) -> list[AuditEvent]:
    with read_session(lab.engine) as s:
        return s.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        ).all()


def processed_part(lab, people, tmp_path, **order) -> tuple[int, int]:
    """A case and its analysed, repaired 20 mm cube (millimetres confirmed)."""
    case_id = case_service.create_case(lab, people["tech"], **order_fields(**order))
    path = tmp_path / "cube.stl"
    trimesh.creation.box(extents=(20, 20, 20)).export(path)
    part_id = case_service.upload_part(lab, people["tech"], case_id, "cube.stl", path)
    assert process_part(lab, part_id)
    confirm_units(lab, people["tech"], part_id, "mm")
    assert process_part(lab, part_id)
    return case_id, part_id


def clearance_error(lab, job_id: int, step: str = "dispatch") -> str | None:
    with unit_of_work(lab.engine) as s:
        try:
            gate.require_clinical_clearance(s, s.get(BuildJob, job_id), step=step)
        except NotApproved as exc:
            return str(exc)
    return None


def approve_case(lab, people, case_id: int) -> None:
    review.review_case(
        lab,
        people["rad"],
        case_id,
        decision="approve",
        scenario=USUAL_SCENARIO,
        password=PASSWORD,
    )


# ----------------------------------------------------------------------------- the gate


def test_dispatch_needs_every_signature_on_the_current_content(lab, people, tmp_path):
    case_id, part_id = processed_part(lab, people, tmp_path)
    job_id = case_service.approve_design(lab, people["presc"], part_id, PASSWORD)

    # Slicing needs the design approval only; dispatch needs the review and the sign-off too.
    assert clearance_error(lab, job_id, step="slicing") is None
    refused = clearance_error(lab, job_id)
    assert "appropriateness review: not signed yet" in refused
    assert "segmentation sign-off: not signed yet" in refused
    assert "design approval" not in refused

    approve_case(lab, people, case_id)
    refused = clearance_error(lab, job_id)
    assert "appropriateness review" not in refused and "segmentation sign-off" in refused

    with pytest.raises(AuthFailed):
        review.sign_segmentation(lab, people["rad"], part_id, "wrong password")
    with pytest.raises(Forbidden):
        review.sign_segmentation(lab, people["tech"], part_id, PASSWORD)
    review.sign_segmentation(lab, people["rad"], part_id, PASSWORD)
    assert clearance_error(lab, job_id) is None

    # Every decision is audited once per change, not once per scheduler pass.
    assert clearance_error(lab, job_id) is None
    decisions = [
        (e.action, e.after["step"])
        for e in events(lab, "gate.refused") + events(lab, "gate.cleared")
    ]
    assert decisions.count(("gate.cleared", "dispatch")) == 1
    assert decisions.count(("gate.refused", "dispatch")) == 2
    assert ("gate.cleared", "slicing") in decisions


def test_a_changed_mesh_voids_the_design_approval(lab, people, tmp_path):
    case_id, part_id = processed_part(lab, people, tmp_path)
    approve_case(lab, people, case_id)
    review.sign_segmentation(lab, people["rad"], part_id, PASSWORD)
    job_id = case_service.approve_design(lab, people["rad"], part_id, PASSWORD)
    assert clearance_error(lab, job_id) is None
    with unit_of_work(lab.engine) as s:  # the repaired mesh is replaced behind the gate
        s.get(Part, part_id).repaired_sha256 = "e" * 64
    refused = clearance_error(lab, job_id)
    assert "design approval: void" in refused
    assert slice_job(lab, job_id)
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
    assert job.state == "slice_failed" and "design approval: void" in job.error


def test_a_changed_unit_voids_the_segmentation_sign_off(lab, people, tmp_path):
    case_id, part_id = processed_part(lab, people, tmp_path)
    approve_case(lab, people, case_id)
    review.sign_segmentation(lab, people["rad"], part_id, PASSWORD)
    with unit_of_work(lab.engine) as s:
        s.get(Part, part_id).scale_to_mm = 10.0  # same file, now read as centimetres
    with read_session(lab.engine) as s:
        step = gate.segmentation_step(s, s.get(Part, part_id))
    assert step.state == "void"


def test_withdrawn_signatures_send_the_case_back(lab, people, tmp_path):
    case_id, part_id = processed_part(lab, people, tmp_path)
    approve_case(lab, people, case_id)
    seg_id = review.sign_segmentation(lab, people["rad"], part_id, PASSWORD)
    job_id = case_service.approve_design(lab, people["rad"], part_id, PASSWORD)
    assert clearance_error(lab, job_id) is None

    with pytest.raises(Forbidden):  # only someone who may sign it may withdraw it
        review.withdraw_signoff(lab, people["tech"], seg_id, PASSWORD, "wrong series")
    with pytest.raises(Invalid):
        review.withdraw_signoff(lab, people["rad"], seg_id, PASSWORD, "  ")
    review.withdraw_signoff(lab, people["rad"], seg_id, PASSWORD, "overlay was the wrong series")
    assert "segmentation sign-off: withdrawn" in clearance_error(lab, job_id)
    with read_session(lab.engine) as s:
        original = s.get(Signature, seg_id)
        withdrawal = s.exec(select(Signature).where(Signature.withdraws_id == seg_id)).one()
    assert original.meaning == "approved segmentation"  # never edited
    assert withdrawal.signer_name == "Rad Tester" and "wrong series" in withdrawal.comment

    review.sign_segmentation(lab, people["rad"], part_id, PASSWORD)
    assert clearance_error(lab, job_id) is None
    with read_session(lab.engine) as s:
        review_sig = gate.review_step(s, s.get(Case, case_id)).signature.id
    review.withdraw_signoff(lab, people["rad"], review_sig, PASSWORD, "indication unclear")
    with read_session(lab.engine) as s:
        assert s.get(Case, case_id).review_status == "awaiting_review"
    assert "appropriateness review: withdrawn" in clearance_error(lab, job_id)


def test_a_rejection_stops_the_case(lab, people, tmp_path):
    case_id, part_id = processed_part(lab, people, tmp_path)
    job_id = case_service.approve_design(lab, people["rad"], part_id, PASSWORD)
    with pytest.raises(Invalid, match="reason"):
        review.review_case(
            lab, people["rad"], case_id, decision="reject", scenario=None, password=PASSWORD
        )
    review.review_case(
        lab,
        people["rad"],
        case_id,
        decision="reject",
        scenario=None,
        justification="education only; no surgical question",
        password=PASSWORD,
    )
    assert "rejected at appropriateness review" in clearance_error(lab, job_id, step="slicing")
    assert "rejected at appropriateness review" in clearance_error(lab, job_id)
    with pytest.raises(WrongState, match="final"):
        approve_case(lab, people, case_id)
    with pytest.raises(NotApproved, match="rejected"):
        review.sign_segmentation(lab, people["rad"], part_id, PASSWORD)
    path = tmp_path / "again.stl"
    trimesh.creation.box(extents=(10, 10, 10)).export(path)
    with pytest.raises(NotApproved, match="rejected"):
        case_service.upload_part(lab, people["tech"], case_id, "again.stl", path)
    with pytest.raises(WrongState):
        case_service.update_case(lab, people["tech"], case_id, indication="try again")


def test_segmentation_overlay_is_stored_and_signed(lab, people, tmp_path):
    _case_id, part_id = processed_part(lab, people, tmp_path)
    bad = tmp_path / "overlay.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(Invalid, match="PNG or JPEG"):
        review.sign_segmentation(lab, people["rad"], part_id, PASSWORD, overlay_path=bad)
    overlay = tmp_path / "overlay2.png"
    overlay.write_bytes(TINY_PNG)
    signature_id = review.sign_segmentation(
        lab, people["rad"], part_id, PASSWORD, overlay_path=overlay, comment="all planes"
    )
    with read_session(lab.engine) as s:
        signature = s.get(Signature, signature_id)
    sha = signature.content["overlay_sha256"]
    assert lab.blobs.exists(sha) and lab.blobs.path(sha).read_bytes() == TINY_PNG


# ----------------------------------------------------------------------------- the review


def test_justification_rule(lab, people):
    catalog.save_row(
        lab,
        people["manager"],
        {
            "scenario_id": "test-may-be-appropriate",
            "catalog_version": "lab-test",
            "specialty": "Musculoskeletal",
            "scenario_text": "A scenario the lab rates 6",
            "rating": "6",
            "source_doi": "10.0000/lab-test",
            "source_table": "Table 1",
        },
    )
    cases = [
        case_service.create_case(lab, people["tech"], **order_fields(patient_code=f"PX-J{n}"))
        for n in range(4)
    ]

    def approve(case_id, scenario, justification=""):
        return review.review_case(
            lab,
            people["rad"],
            case_id,
            decision="approve",
            scenario=scenario,
            justification=justification,
            password=PASSWORD,
        )

    assert approve(cases[0], USUAL_SCENARIO) > 0  # usually appropriate: no reason needed
    with pytest.raises(Invalid, match="rated 6"):
        approve(cases[1], "test-may-be-appropriate@lab-test")
    approve(cases[1], "test-may-be-appropriate@lab-test", "vascular surgeon asks for the fit")
    with pytest.raises(Invalid, match="matches no catalog scenario"):
        approve(cases[2], None)
    approve(cases[2], None, "rare anatomy; tumour board asked for a model")
    with pytest.raises(Invalid, match="no active catalog scenario"):
        approve(cases[3], "made-up@nowhere", "a reason that is long enough")
    with pytest.raises(Forbidden):
        review.review_case(
            lab, people["tech"], cases[3], decision="approve", scenario=USUAL_SCENARIO
        )
    with read_session(lab.engine) as s:
        copied = s.exec(
            select(AppropriatenessReview).where(AppropriatenessReview.case_id == cases[1])
        ).one()
        copied = (copied.rating, copied.band, copied.justification)
    assert tuple(copied) == (6, "may", "vascular surgeon asks for the fit")


def test_more_information_then_an_edit_returns_the_case_to_review(lab, people):
    case_id = case_service.create_case(lab, people["tech"], **order_fields())
    review.review_case(
        lab,
        people["rad"],
        case_id,
        decision="more_info",
        scenario=None,
        justification="which side? the order says midline",
    )
    with read_session(lab.engine) as s:
        assert s.get(Case, case_id).review_status == "info_requested"
    changed = case_service.update_case(lab, people["tech"], case_id, ordering_contact="ext 4411")
    assert changed == ["ordering_contact"]
    with read_session(lab.engine) as s:
        assert s.get(Case, case_id).review_status == "awaiting_review"
    approve_case(lab, people, case_id)
    # A change the reviewer judged voids the review; a new deadline does not.
    case_service.update_case(
        lab, people["tech"], case_id, needed_by=date.today() + timedelta(days=2)
    )
    with read_session(lab.engine) as s:
        case = s.get(Case, case_id)
        assert case.review_status == "approved" and gate.review_step(s, case).valid
    case_service.update_case(lab, people["tech"], case_id, indication="Thoracic aneurysm instead")
    with read_session(lab.engine) as s:
        case = s.get(Case, case_id)
        assert case.review_status == "awaiting_review"
        assert gate.review_step(s, case).state == "void"
    assert events(lab, "case.updated")[-1].before["indication"].startswith("Complex")


# ----------------------------------------------------------------------------- the order


def test_order_rules(lab, people):
    tech = people["tech"]
    with pytest.raises(Invalid) as refused:
        case_service.create_case(
            lab,
            tech,
            **order_fields(
                ordering_clinician="",
                intended_use="fun",
                icd10_code="aortic",
                anatomy=[{"region": "Head", "subregion": "Liver", "laterality": "left"}],
            ),
        )
    message = str(refused.value)
    for expected in ("ordering clinician", "intended use", "ICD-10", "not a subregion of Head"):
        assert expected in message
    with pytest.raises(Invalid, match="custom-made device needs the prescriber"):
        case_service.create_case(lab, tech, **order_fields(regulatory_route="custom_made"))
    case_id = case_service.create_case(
        lab,
        tech,
        **order_fields(
            icd10_code="s32.41",
            regulatory_route="custom_made",
            prescriber_name="Dr B. Ortho",
            prescriber_qualification="Consultant orthopaedic surgeon, GMC 1234567",
            design_characteristics="Cutting guide: 2 mm slot, 3 x 2.5 mm drill sleeves",
            anatomy=[
                {
                    "region": "Pelvis",
                    "subregion": "Bone",
                    "structure": "Acetabulum",
                    "laterality": "right",
                },
                {"region": "Breast", "subregion": "Tumour", "laterality": "left"},
            ],
        ),
    )
    with read_session(lab.engine) as s:
        case = s.get(Case, case_id)
    assert case.icd10_code == "S32.41" and len(case.anatomy) == 2
    with pytest.raises(Invalid, match="unknown order fields"):
        case_service.create_case(lab, tech, **order_fields(patient_name="Jane Doe"))


def test_thick_slices_are_a_warning_not_a_refusal():
    from pocprint.domain.cases import order_warnings

    assert "above 2 mm" in order_warnings({"slice_thickness_mm": 3.0})[0]
    assert order_warnings({"slice_thickness_mm": 1.25}) == []


def test_patient_identifiers_are_encrypted_in_the_database(lab, people):
    identifiers = {"name": "Jane Testpatient", "record_number": "MRN-99812"}
    case_id = case_service.create_case(
        lab, people["tech"], patient_identifiers=identifiers, **order_fields()
    )
    with lab.engine.connect() as conn:
        raw = conn.execute(
            sa.text("SELECT patient_identifiers FROM lab_case WHERE id = :id"), {"id": case_id}
        ).scalar_one()
        audit_text = " ".join(
            str(row) for row in conn.execute(sa.text("SELECT after, reason FROM audit_event"))
        )
    assert raw and "Testpatient" not in raw and "MRN-99812" not in raw
    assert "Testpatient" not in audit_text and "MRN-99812" not in audit_text
    assert decrypt(lab.settings, raw) == identifiers
    keyless = lab.settings.with_(identifiers_key=None)
    with pytest.raises(Invalid, match="stores no patient identifiers"):
        decrypt(keyless, raw)
    no_key_lab = type(lab)(**{**lab.__dict__, "settings": keyless})
    with pytest.raises(Invalid, match="stores no patient identifiers"):
        case_service.create_case(
            no_key_lab, people["tech"], patient_identifiers=identifiers, **order_fields()
        )
