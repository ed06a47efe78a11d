"""Where a case is, who acts next and the one action (pure rules of domain/case_flow.py)."""

from __future__ import annotations

from dataclasses import replace

from pocprint.domain.case_flow import CaseFacts, PartFacts, bar, position

PART = PartFacts(
    part_id=1,
    label="Part 1",
    part_state="approved",
    usable=True,
    signoff_valid=True,
    design_state="valid",
    job_state="completed",
    serial="D2026-000001",
    outcome="accepted",
    qa_state="done",
    release_valid=True,
    delivered=True,
)


def at(part: PartFacts | None = None, review_status="approved", review_state="valid"):
    parts = (part,) if part else ()
    return position(CaseFacts(review_status, review_state, parts))


def test_every_step_names_who_acts_and_the_action_with_its_permission():
    cases = [
        (at(None, "awaiting_review", "missing"), "review", "radiologist", "review_appropriateness"),
        (at(None, "info_requested", "missing"), "order", "prescriber", "create_case"),
        (at(None), "mesh", "technician", "upload_mesh"),
        (at(replace(PART, part_state="awaiting_units")), "mesh", "technician", "confirm_units"),
        (at(replace(PART, part_state="processed", usable=False)), "mesh", "technician",
         "accept_repair"),
        (at(replace(PART, signoff_valid=False)), "signoff", "radiologist", "sign_segmentation"),
        (at(replace(PART, job_state=None, design_state="missing")), "approval", "prescriber",
         "approve_design"),
        (at(replace(PART, job_state="ready")), "print", "technician", "operate_printers"),
        (at(replace(PART, job_state="printed", outcome=None)), "print", "technician",
         "record_outcome"),
        (at(replace(PART, qa_state="open", post_open=True)), "post", "technician",
         "record_post_processing"),
        (at(replace(PART, qa_state="open")), "qa", "technician", "record_post_processing"),
        (at(replace(PART, release_valid=False)), "release", "lab_manager", "release_device"),
        (at(replace(PART, delivered=False)), "delivery", "technician", "record_post_processing"),
    ]  # fmt: skip
    for where, step, actor, permission in cases:
        assert (where.step, where.actor, where.action.permission) == (step, actor, permission)
    done = at(PART)
    assert done.status == "done" and done.action is None
    assert {s["state"] for s in bar(done)} == {"done"}


def test_a_held_job_carries_its_reasons_and_a_review_voided_by_an_edit_leads():
    held = at(replace(PART, job_state="ready", holds=("clinical gate: review void",)))
    assert held.status == "held" and held.reasons == ("clinical gate: review void",)
    edited = at(replace(PART, job_state="ready"), "awaiting_review", "void")
    assert edited.step == "review" and "order changed" in edited.summary


def test_a_rejected_build_is_reprinted_or_scrapped_never_a_dead_end():
    rejected = at(replace(PART, outcome="rejected", qa_state="open"))
    assert rejected.action.label == "Reprint or scrap" and rejected.action.anchor == "qa"
    scrapped = at(replace(PART, outcome="rejected", disposition="scrap"))
    assert scrapped.status == "stopped" and scrapped.action is None
    stopped = at(PART, "rejected", "rejected")
    assert stopped.step == "review" and stopped.status == "stopped"
    assert [s["state"] for s in bar(stopped)][:2] == ["done", "stopped"]


def test_a_part_too_complex_to_repair_asks_for_a_repaired_upload_not_an_acceptance():
    held = at(replace(PART, part_state="processed", usable=False, too_complex=True))
    assert (held.step, held.status, held.actor) == ("mesh", "held", "technician")
    assert held.action.permission == "upload_mesh"
    assert "too complex to repair automatically" in held.summary
