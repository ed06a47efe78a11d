"""A held job shows why, in words, and a plate clear never promises a start that dispatch will
not make (issue 13). Real database, real PrusaSlicer, a manual printer (idle by definition)."""

from __future__ import annotations

import pytest
from sqlmodel import func, select

from pocprint.reads.holds import Holds, plate_clear_message
from pocprint.services import cases as case_service
from pocprint.services import dispatch
from pocprint.services.review import review_case
from pocprint.services.slicing import slice_job
from pocprint.store.db import read_session
from pocprint.store.models import AuditEvent, BuildJob

from conftest import PASSWORD, USUAL_SCENARIO, write_printer
from fleet_helpers import PLA_180, box, cleared_job, fleet_lab, printer_named

pytestmark = pytest.mark.slicer


def _manual_lab(tmp_path, database_url, material="PLA"):
    d = tmp_path / "printers"
    write_printer(
        d,
        "manual-1",
        None,
        connector="manual",
        api_key_file=None,
        profiles=[PLA_180],
        build_volume_mm=[180, 180, 180],
        material=material,
    )
    return fleet_lab(tmp_path, database_url, d)


@pytest.fixture
def manual_lab(tmp_path, database_url):
    lab, people = _manual_lab(tmp_path, database_url)
    yield lab, people
    lab.engine.dispose()


def _events(lab) -> int:
    with read_session(lab.engine) as s:
        return s.exec(select(func.count(AuditEvent.id))).one()


def test_an_order_edit_holds_the_job_with_the_reason_and_plate_clear_says_nothing_starts(
    manual_lab, tmp_path
):
    lab, people = manual_lab
    job_id = cleared_job(lab, people, box(tmp_path))
    assert slice_job(lab, job_id)
    with read_session(lab.engine) as s:
        case_id = s.get(BuildJob, job_id).case_id
    printer = printer_named(lab, "manual-1")

    # Cleared: nothing holds it, and a plate clear starts it.
    with read_session(lab.engine) as s:
        assert Holds(s, lab).of(s.get(BuildJob, job_id)) == []
        category, text = plate_clear_message(s, lab, printer.id)
    serial = text.split("Job ")[1].split(" ")[0]
    assert (
        category == "ok" and text == f"Plate confirmed clear. Job {serial} starts on manual-1 next."
    )

    # The order is edited: the review is void, the job is still "ready" but held.
    case_service.update_case(lab, people["tech"], case_id, indication="Thoracic aneurysm instead")
    before = _events(lab)
    with read_session(lab.engine) as s:
        held = Holds(s, lab).of(s.get(BuildJob, job_id))
        category, text = plate_clear_message(s, lab, printer.id)
    assert held == [
        "clinical gate: appropriateness review: void: the signed content changed since; "
        "it must be signed again"
    ]
    assert category == "warn" and "starts" not in text
    assert text.startswith("Plate confirmed clear, but no job can start on manual-1 now:")
    assert "is held by the clinical gate: appropriateness review: void" in text
    assert _events(lab) == before  # judging for a page writes no audit event

    # ...and dispatch agrees: the plate clear starts nothing.
    dispatch.confirm_plate_clear(lab, people["tech"], printer.id)
    assert dispatch.dispatch_ready_jobs(lab) == 0
    with read_session(lab.engine) as s:
        assert s.get(BuildJob, job_id).state == "ready"

    # Signed again: no longer held.
    review_case(
        lab, people["rad"], case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
    )
    with read_session(lab.engine) as s:
        assert Holds(s, lab).of(s.get(BuildJob, job_id)) == []


def test_a_job_no_printer_can_take_is_held_with_each_printers_reason(tmp_path, database_url):
    # The only printer is loaded with PETG; the order names PLA. A clear plate changes nothing.
    lab, people = _manual_lab(tmp_path, database_url, material="PETG")
    try:
        job_id = cleared_job(lab, people, box(tmp_path))
        assert slice_job(lab, job_id)
        printer = printer_named(lab, "manual-1")
        with read_session(lab.engine) as s:
            job = s.get(BuildJob, job_id)
            assert job.state == "ready", job.error
            held = Holds(s, lab).of(job)
            category, text = plate_clear_message(s, lab, printer.id)
        assert held == [f"manual-1: printer is loaded with PETG, the {PLA_180} slice needs PLA"]
        assert category == "warn" and f"{job.serial}: printer is loaded with PETG" in text
    finally:
        lab.engine.dispose()
