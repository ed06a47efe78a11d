"""Fleet rules on the service layer with a real database and the real PrusaSlicer: validated
combinations, placement refusals before slicing, one slice per validated profile, slicer
failures shown, the urgent override, and a printer without a network API end to end."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from sqlmodel import select

from pocprint.domain.states import JobState
from pocprint.domain.verification import print_verification
from pocprint.services import dispatch, jobs, manual_printing
from pocprint.services.errors import Forbidden, Invalid, WrongState
from pocprint.services.slicing import slice_job
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import AuditEvent, JobSlice, Printer

from conftest import PASSWORD, write_printer
from fleet_helpers import (
    PETG_250,
    PLA_180,
    PLA_250,
    ROUTING,
    box,
    cleared_job,
    fleet_lab,
    job,
    printer_named,
)

pytestmark = [pytest.mark.slicer]


@pytest.fixture
def fleet(tmp_path, database_url):
    """Three offline OctoPrint printers: a big PLA one, a big PETG one, a small PLA one."""
    d = tmp_path / "printers"
    write_printer(d, "big-pla", "http://127.0.0.1:9", key="k", profiles=[PLA_250, PETG_250])
    write_printer(
        d, "big-petg", "http://127.0.0.1:9", key="k", material="PETG", profiles=[PLA_250, PETG_250]
    )
    write_printer(
        d,
        "small-pla",
        "http://127.0.0.1:9",
        key="k",
        profiles=[PLA_180],
        build_volume_mm=[180, 180, 180],
    )
    lab, people = fleet_lab(tmp_path, database_url, d)
    yield lab, people
    lab.engine.dispose()


def slices_of(lab, job_id):
    with read_session(lab.engine) as s:
        return s.exec(select(JobSlice).where(JobSlice.job_id == job_id).order_by(JobSlice.id)).all()


def actions(lab, serial):
    with read_session(lab.engine) as s:
        return s.exec(
            select(AuditEvent).where(AuditEvent.entity_id == serial).order_by(AuditEvent.id)
        ).all()


def test_a_job_is_sliced_for_every_validated_profile_in_its_ordered_material(fleet, tmp_path):
    fleet, people = fleet
    job_id = cleared_job(fleet, people, box(tmp_path, (30, 20, 10)))  # the order names PLA
    assert slice_job(fleet, job_id)
    built = job(fleet, job_id)
    assert built.state == JobState.READY, built.error
    pla_slices = {s.profile_id: s for s in slices_of(fleet, job_id)}
    assert set(pla_slices) == {PLA_250, PLA_180}  # never the validated PETG profile
    assert {s.material for s in pla_slices.values()} == {"PLA"}
    petg_job = cleared_job(
        fleet, people, box(tmp_path, (30, 20, 10)), patient_code="PX-0009", material="PETG"
    )
    assert slice_job(fleet, petg_job)
    assert [s.profile_id for s in slices_of(fleet, petg_job)] == [PETG_250]
    slices = pla_slices | {s.profile_id: s for s in slices_of(fleet, petg_job)}
    for profile_id, s in slices.items():
        data = fleet.profiles[profile_id].path.read_bytes()
        assert s.profile_sha256 == hashlib.sha256(data).hexdigest()
        assert s.slicer_name == "PrusaSlicer" and s.slicer_version
        assert s.estimated_time_s > 0 and s.filament_mm > 0 and s.filament_cm3 > 0
        assert s.slicer_config["filament_type"] == s.material
        assert fleet.blobs.verify(s.gcode_sha256)
        # laid flat on its largest face and centred on the bed
        assert s.placement["orientation"] == "stable"
        assert sorted(s.placement["extents_mm"]) == pytest.approx([10, 20, 30], abs=0.01)
        assert s.placement["extents_mm"][2] == pytest.approx(10, abs=0.01)
    # grams are real: same volume of plastic, PETG is denser than PLA
    pla, petg = slices[PLA_250], slices[PETG_250]
    assert petg.filament_g / petg.filament_cm3 == pytest.approx(1.27, rel=0.01)
    assert pla.filament_g / pla.filament_cm3 == pytest.approx(1.24, rel=0.01)
    assert built.gcode_sha256 in {s.gcode_sha256 for s in pla_slices.values()}


def test_a_guide_is_sliced_only_with_its_validated_material(fleet, tmp_path):
    fleet, people = fleet
    job_id = cleared_job(fleet, people, box(tmp_path, (30, 20, 10)), device_type="surgical_guide")
    assert slice_job(fleet, job_id)
    assert [s.profile_id for s in slices_of(fleet, job_id)] == [PETG_250]
    assert job(fleet, job_id).material == "PETG"


def test_no_validated_combination_is_refused_with_the_reason(tmp_path, database_url, people_lab):
    lab, people = people_lab(
        combinations=[{"profile": PLA_250, "material": "PLA", "device_types": ["anatomical_model"]}]
    )
    # The order form already refuses a material nobody validated for the device type...
    with pytest.raises(Invalid, match="PETG is not validated for surgical guides"):
        cleared_job(lab, people, box(tmp_path), device_type="surgical_guide")
    # ...and slicing refuses, saying why, when the lab withdrew the combination afterwards.
    job_id = cleared_job(lab, people, box(tmp_path), material="PLA")
    withdrawn = dataclasses.replace(lab, combinations=())
    assert slice_job(withdrawn, job_id)
    failed = job(lab, job_id)
    assert failed.state == JobState.SLICE_FAILED
    assert (
        "no validated combination" in failed.error and "PLA for anatomical models" in failed.error
    )
    assert slices_of(lab, job_id) == []


def test_too_tall_and_too_wide_parts_are_refused_before_slicing(fleet, tmp_path):
    fleet, people = fleet
    # Upright as the clinician designed it, 230 mm is taller than any printer allows.
    tall = cleared_job(fleet, people, box(tmp_path, (40, 40, 230), "tall"), patient_code="PX-0002")
    jobs.set_orientation(
        fleet, people["tech"], tall, "as_designed", "cutting plane must stay vertical"
    )
    assert slice_job(fleet, tall)
    refused = job(fleet, tall)
    assert refused.state == JobState.SLICE_FAILED
    assert "refused before slicing" in refused.error
    assert "too tall: 230.0 mm along Z, the printer allows 210.0 mm" in refused.error
    assert slices_of(fleet, tall) == []
    # No slicer ran: the refusal is the only slicing event.
    sliced = [e.action for e in actions(fleet, refused.serial) if e.action.startswith("job.slice")]
    assert sliced == ["job.slice_failed"]
    assert refused.orientation == "as_designed" and refused.orientation_reason

    # Laid on a stable face the same part fits the big printers (not the small one).
    jobs.set_orientation(fleet, people["tech"], tall, "stable", "let it lie")
    assert slice_job(fleet, tall)
    assert {s.profile_id for s in slices_of(fleet, tall)} == {PLA_250}

    # 300 mm long lies down too, but is wider than every bed.
    wide = cleared_job(fleet, people, box(tmp_path, (300, 40, 20), "wide"), patient_code="PX-0003")
    assert slice_job(fleet, wide)
    refused = job(fleet, wide)
    assert refused.state == JobState.SLICE_FAILED
    assert "too wide: 300.0 mm along X" in refused.error
    assert slices_of(fleet, wide) == []


def test_a_slicer_failure_is_reported_not_swallowed(tmp_path, database_url, people_lab):
    lab, people = people_lab(slicer_timeout_s=0.05)
    job_id = cleared_job(lab, people, box(tmp_path))
    assert slice_job(lab, job_id)
    failed = job(lab, job_id)
    assert failed.state == JobState.SLICE_FAILED
    assert "slicer timed out after 0.05 s" in failed.error
    assert failed.gcode_sha256 is None and slices_of(lab, job_id) == []
    event = [e for e in actions(lab, failed.serial) if e.action == "job.slice_failed"][-1]
    assert "timed out" in event.reason


def test_urgent_override_needs_the_permission_and_a_reason(fleet, tmp_path):
    fleet, people = fleet
    job_id = cleared_job(fleet, people, box(tmp_path))
    with pytest.raises(Forbidden):
        jobs.set_urgent(fleet, people["rad"], job_id, True, "surgery moved")
    with pytest.raises(Invalid):
        jobs.set_urgent(fleet, people["tech"], job_id, True, "  ")
    jobs.set_urgent(fleet, people["tech"], job_id, True, "surgery moved to tomorrow 8:00")
    urgent = job(fleet, job_id)
    assert urgent.urgent and urgent.urgent_reason == "surgery moved to tomorrow 8:00"
    assert urgent.urgent_by == people["tech"].user_id and urgent.urgent_at is not None
    event = [e for e in actions(fleet, urgent.serial) if e.action == "job.priority"][-1]
    assert event.actor == "tech" and event.after == {"urgent": True}
    with pytest.raises(WrongState):
        jobs.set_urgent(fleet, people["tech"], job_id, True, "again")


def test_manual_printer_end_to_end(tmp_path, database_url, people_lab):
    lab, people = people_lab(manual=True)
    tech = people["tech"]
    job_id = cleared_job(lab, people, box(tmp_path))
    assert slice_job(lab, job_id)
    manual = printer_named(lab, "manual-1")
    assert manual.state == "idle"
    # No job before the plate is confirmed clear.
    assert dispatch.dispatch_ready_jobs(lab) == 0
    assert job(lab, job_id).state == JobState.READY
    dispatch.confirm_plate_clear(lab, tech, manual.id)
    assert dispatch.dispatch_ready_jobs(lab) == 0  # nothing is sent over a network...
    waiting = job(lab, job_id)
    assert waiting.state == JobState.DISPATCHING and waiting.printer_id == manual.id
    assert waiting.profile_id == PLA_180  # ...but the slice made for this printer is chosen
    assert not printer_named(lab, "manual-1").plate_clear

    with pytest.raises(WrongState, match="download the verified G-code first"):
        manual_printing.confirm_start(lab, tech, job_id, confirmed_file=True)
    with pytest.raises(Forbidden):
        manual_printing.gcode_for_download(lab, people["rad"], job_id)
    path, name = manual_printing.gcode_for_download(lab, tech, job_id)
    assert name == f"{waiting.serial}.gcode" and "PX-" not in name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == waiting.gcode_sha256
    with pytest.raises(Invalid, match="confirm that the file you started"):
        manual_printing.confirm_start(lab, tech, job_id, "started from SD card")
    manual_printing.confirm_start(lab, tech, job_id, "started from SD card", confirmed_file=True)
    started = job(lab, job_id)
    assert started.state == JobState.PRINTING
    # The record says what verified the print: the technician, not a printer's hash (the
    # printer has none; pocprint's own SHA-1 is never recorded as the printer's).
    assert started.printer_sha1 is None
    proof = print_verification(started.printer_sha1, started.printer_report)
    assert proof["evidence"] == "technician_confirmed_download"
    assert proof["value"] == waiting.gcode_sha256 and proof["confirmed_by"] == "tech"
    assert "printer itself reports nothing" in proof["label"]
    assert printer_named(lab, "manual-1").state == "printing"

    with pytest.raises(Invalid):
        jobs.pause_job(lab, tech, job_id, "")
    jobs.pause_job(lab, tech, job_id, "filament runout")
    assert printer_named(lab, "manual-1").state == "paused"
    jobs.resume_job(lab, tech, job_id, "new spool loaded")
    assert printer_named(lab, "manual-1").state == "printing"
    with pytest.raises(Invalid):
        manual_printing.confirm_end(lab, tech, job_id, "failed", "")
    manual_printing.confirm_end(lab, tech, job_id, "printed")
    done = job(lab, job_id)
    assert done.state == JobState.PRINTED and done.finished_at is not None
    steps = [(c["action"], c["by"], c["reason"]) for c in done.controls]
    assert steps == [
        ("download", "tech", None),
        ("start", "tech", "started from SD card"),
        ("pause", "tech", "filament runout"),
        ("resume", "tech", "new spool loaded"),
        ("end_printed", "tech", None),
    ]
    assert all(c["at"] for c in done.controls)
    after = printer_named(lab, "manual-1")
    assert after.state == "idle" and not after.plate_clear  # the part is on the plate


def test_dispatch_waits_for_plate_clear_and_respects_calibration(
    tmp_path, database_url, people_lab
):
    lab, people = people_lab(manual=True, calibration_due="2020-01-01")
    job_id = cleared_job(lab, people, box(tmp_path))
    assert slice_job(lab, job_id)
    manual = printer_named(lab, "manual-1")
    dispatch.confirm_plate_clear(lab, people["tech"], manual.id)
    assert dispatch.dispatch_ready_jobs(lab) == 0
    assert job(lab, job_id).state == JobState.READY  # calibration overdue: nothing goes
    with unit_of_work(lab.engine) as s:
        s.get(Printer, manual.id).calibration_due = None
    dispatch.dispatch_ready_jobs(lab)
    assert job(lab, job_id).state == JobState.DISPATCHING


@pytest.fixture
def people_lab(tmp_path, database_url):
    """Build a lab with one manual printer (or one offline OctoPrint) and its people."""
    made = []

    def make(manual=False, combinations=None, calibration_due="2099-01-01", **settings):
        d = tmp_path / "printers"
        if manual:
            write_printer(
                d,
                "manual-1",
                None,
                connector="manual",
                api_key_file=None,
                profiles=[PLA_180],
                build_volume_mm=[180, 180, 180],
                calibration_due=calibration_due,
            )
        else:
            write_printer(d, "big-pla", "http://127.0.0.1:9", key="k", profiles=[PLA_250])
        lab, people = fleet_lab(tmp_path, database_url, d, combinations or ROUTING, **settings)
        made.append(lab)
        return lab, people

    yield make
    for lab in made:
        lab.engine.dispose()


def test_walls_thinner_than_the_printer_resolves_are_flagged_on_the_slice(tmp_path, database_url):
    d = tmp_path / "printers"
    write_printer(
        d, "coarse", "http://127.0.0.1:9", key="k", profiles=[PLA_250], min_feature_mm=1.5
    )
    lab, people = fleet_lab(tmp_path, database_url, d)
    try:
        job_id = cleared_job(lab, people, box(tmp_path, (30, 30, 1.0), "plate"))
        assert slice_job(lab, job_id)
        sliced = job(lab, job_id)
        assert sliced.state == JobState.READY  # a warning, not a refusal
        warning = sliced.placement["warning"]
        assert warning.startswith("walls down to 1.0") and "coarse reproduce 1.5 mm" in warning
        assert sliced.placement["min_feature_mm"] == 1.5
        event = [e for e in actions(lab, sliced.serial) if e.action == "job.sliced"][-1]
        assert event.after["slices"][0]["warning"] == warning
    finally:
        lab.engine.dispose()


def test_a_job_the_gate_refuses_holds_no_printer_and_is_audited_once(
    tmp_path, database_url, people_lab
):
    from pocprint.services import review
    from pocprint.store.models import BuildJob, Signature

    lab, people = people_lab(manual=True)
    urgent = cleared_job(lab, people, box(tmp_path, name="urgent"), days=1, patient_code="PX-0101")
    later = cleared_job(lab, people, box(tmp_path, name="later"), days=9, patient_code="PX-0102")
    assert slice_job(lab, urgent) and slice_job(lab, later)
    # After slicing, the radiologist withdraws the more urgent job's segmentation sign-off.
    with read_session(lab.engine) as s:
        part_id = s.get(BuildJob, urgent).part_id
        signoff = s.exec(
            select(Signature).where(
                Signature.meaning == "approved segmentation", Signature.entity_id == str(part_id)
            )
        ).one()
    review.withdraw_signoff(lab, people["rad"], signoff.id, PASSWORD, "segmented the wrong phase")

    manual = printer_named(lab, "manual-1")
    dispatch.confirm_plate_clear(lab, people["tech"], manual.id)
    dispatch.dispatch_ready_jobs(lab)
    dispatch.dispatch_ready_jobs(lab)  # a second scheduler pass
    # The refused job did not take the printer from the cleared one.
    assert job(lab, urgent).state == JobState.READY
    assert job(lab, later).state == JobState.DISPATCHING
    refusals = [e for e in actions(lab, job(lab, urgent).serial) if e.action == "gate.refused"]
    assert len(refusals) == 1 and "segmentation sign-off: withdrawn" in refusals[0].reason
