"""Material lots, the maintenance log, post-processing, QA and release on a real database:
what blocks dispatch, what blocks release, and what a failed QA leads to."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest
from PIL import Image
from sqlmodel import select

from pocprint.domain.states import JobState
from pocprint.services import maintenance, materials, postprocessing, release
from pocprint.services.errors import Forbidden, Invalid, WrongState
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Printer, QaDisposition, Signature, utcnow

from conftest import PASSWORD
from trace_helpers import lab_manager, printed_device

TODAY = date.today()


def printer_id(lab) -> int:
    with read_session(lab.engine) as s:
        return s.exec(select(Printer).order_by(Printer.id)).first().id


def receive(lab, actor, lot="L2026-001", expiry=None, material="PLA") -> int:
    return materials.receive_lot(
        lab,
        actor,
        material=material,
        manufacturer="Acme Filaments",
        lot_number=lot,
        expiry=expiry or TODAY + timedelta(days=200),
        quantity_g=1000,
    )


def blocks(lab, material="PLA") -> list[str]:
    with read_session(lab.engine) as s:
        return materials.dispatch_blocks(s, printer_id(lab), material, utcnow())


def test_printer_without_a_loaded_lot_is_blocked_until_one_is_loaded(lab, people):
    assert blocks(lab) == ["no material lot loaded on this printer"]
    lot = receive(lab, people["tech"])
    materials.load_lot(lab, people["tech"], printer_id(lab), lot)
    assert blocks(lab) == []
    materials.load_lot(lab, people["tech"], printer_id(lab), None)
    assert blocks(lab) == ["no material lot loaded on this printer"]


def test_expired_lot_blocks_and_cannot_be_loaded(lab, people):
    lot = receive(lab, people["tech"], expiry=TODAY + timedelta(days=1))
    materials.load_lot(lab, people["tech"], printer_id(lab), lot)
    with read_session(lab.engine) as s:
        later = utcnow() + timedelta(days=3)  # the lot has expired by then
        reasons = materials.dispatch_blocks(s, printer_id(lab), "PLA", later)
    expected_day = (TODAY + timedelta(days=1)).isoformat()
    assert reasons == [f"material lot L2026-001 expired on {expected_day}"]
    old = receive(lab, people["tech"], lot="L2020-9", expiry=TODAY - timedelta(days=1))
    with pytest.raises(Invalid, match="expired"):
        materials.load_lot(lab, people["tech"], printer_id(lab), old)


def test_lot_of_another_material_is_refused_and_blocks(lab, people):
    petg = receive(lab, people["tech"], lot="P-77", material="PETG")
    with pytest.raises(Invalid, match="set up for PLA"):
        materials.load_lot(lab, people["tech"], printer_id(lab), petg)
    pla = receive(lab, people["tech"])
    materials.load_lot(lab, people["tech"], printer_id(lab), pla)
    # The printer's definition changed to PETG after the PLA lot went on.
    assert blocks(lab, material="PETG") == [
        "loaded lot L2026-001 is PLA, the printer's material is PETG"
    ]


def test_lot_input_is_checked_and_nothing_half_written(lab, people):
    for bad in (
        dict(lot_number="lot with spaces"),
        dict(lot_number="X" * 21),
        dict(quantity_g=0),
        dict(expiry=None),
        dict(manufacturer=" "),
    ):
        values = dict(
            material="PLA",
            manufacturer="Acme",
            lot_number="L1",
            expiry=TODAY + timedelta(days=9),
            quantity_g=750.0,
        )
        values.update(bad)
        with pytest.raises(Invalid):
            materials.receive_lot(lab, people["tech"], **values)
    with pytest.raises(Forbidden):
        receive(lab, people["auditor"])
    with read_session(lab.engine) as s:
        assert s.exec(select(materials.MaterialLot)).all() == []


def test_overdue_or_failed_calibration_blocks_the_printer(lab, people):
    lot = receive(lab, people["tech"])
    pid = printer_id(lab)
    materials.load_lot(lab, people["tech"], pid, lot)
    maintenance.record_entry(
        lab,
        people["tech"],
        pid,
        kind="calibration",
        description="bed levelling and extruder e-steps",
        result="passed",
        performed_at=utcnow() - timedelta(days=40),
        next_due=TODAY - timedelta(days=2),
    )
    assert blocks(lab) == [f"calibration overdue since {(TODAY - timedelta(days=2)).isoformat()}"]
    maintenance.record_entry(
        lab, people["tech"], pid, kind="calibration", description="re-check", result="failed"
    )
    assert blocks(lab) == [f"calibration logged as failed on {TODAY.isoformat()}"]
    maintenance.record_entry(
        lab,
        people["tech"],
        pid,
        kind="calibration",
        description="nozzle replaced, re-calibrated",
        result="passed",
        next_due=TODAY + timedelta(days=90),
    )
    assert blocks(lab) == []
    with pytest.raises(Invalid, match="date the next one is due"):
        maintenance.record_entry(
            lab, people["tech"], pid, kind="calibration", description="x", result="passed"
        )
    with pytest.raises(Forbidden):
        maintenance.record_entry(
            lab, people["rad"], pid, kind="maintenance", description="x", result="done"
        )


def test_the_dispatcher_refuses_a_printer_with_an_expired_lot_or_overdue_calibration(lab, people):
    """Through the dispatcher's own view of the printer and its refusal rule."""
    from pocprint.domain.dispatch import JobView, refusals
    from pocprint.services.dispatch import printer_views

    pid = printer_id(lab)
    with unit_of_work(lab.engine) as s:  # idle with a clear plate: nothing else objects
        printer = s.get(Printer, pid)
        printer.state, printer.plate_clear = "idle", True
    job = JobView(1, "generic-fff-250x210_pla", TODAY, utcnow(), (10.0, 10.0, 10.0))

    def dispatcher_says(now):
        with read_session(lab.engine) as s:
            views = printer_views(lab, s, [s.get(Printer, pid)], now)
        return refusals(views[0], job, now.date())

    lot = receive(lab, people["tech"], expiry=TODAY + timedelta(days=1))
    materials.load_lot(lab, people["tech"], pid, lot)
    baseline = dispatcher_says(utcnow())  # whatever the fleet rules say of this test printer
    assert not any("lot" in r or "calibration" in r for r in baseline), baseline
    in_three_days = utcnow() + timedelta(days=3)
    expiry = (TODAY + timedelta(days=1)).isoformat()
    assert sorted(dispatcher_says(in_three_days)) == sorted(
        [*baseline, f"material lot L2026-001 expired on {expiry}"]
    )

    maintenance.record_entry(
        lab,
        people["tech"],
        pid,
        kind="calibration",
        description="levelling",
        result="passed",
        performed_at=utcnow() - timedelta(days=30),
        next_due=TODAY - timedelta(days=1),
    )
    overdue = f"calibration overdue since {(TODAY - timedelta(days=1)).isoformat()}"
    assert sorted(dispatcher_says(utcnow())) == sorted([*baseline, overdue])


def record_guide_steps(lab, tech, job_id, skip=()):
    steps = {
        "support_removal": {"method": "manual"},
        "wash": {"solvent": "IPA 99%", "minutes": 10},
        "cure": {"minutes": 30, "temperature_c": 60},
        "sterilisation": {"method": "steam 121 °C", "cycle_id": "AUTOCLAVE-3/4471"},
    }
    for key, params in steps.items():
        if key not in skip:
            postprocessing.record_step(lab, tech, job_id, key, params)


def test_release_is_refused_while_a_step_is_open_then_signed(lab, people, tmp_path):
    manager = lab_manager(lab, people)
    tech = people["tech"]
    job_id = printed_device(lab, people, tmp_path)
    record_guide_steps(lab, tech, job_id, skip=("sterilisation",))
    postprocessing.record_measurement(
        lab, tech, job_id, feature="drill sleeve spacing", designed_mm=24.0,
        measured_mm=24.3, tolerance_mm=0.5,
    )  # fmt: skip
    with pytest.raises(WrongState, match="Sterilisation"):
        release.release_device(lab, manager, job_id, PASSWORD)
    with pytest.raises(Invalid, match="Cycle id is required"):
        postprocessing.record_step(lab, tech, job_id, "sterilisation", {"method": "EtO"})
    postprocessing.record_step(
        lab, tech, job_id, "sterilisation", {"method": "H2O2 plasma", "cycle_id": "STERRAD-88"}
    )
    with pytest.raises(Forbidden):
        release.release_device(lab, tech, job_id, PASSWORD)
    signature_id = release.release_device(lab, manager, job_id, PASSWORD, "fit for use")
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        status = release.release_status(s, job)
        assert status.valid and status.signature.id == signature_id
        assert s.get(Signature, signature_id).signer_name == "Manager Tester"
    with pytest.raises(WrongState, match="already released"):
        release.release_device(lab, manager, job_id, PASSWORD)
    # A measurement recorded after the release changes what was signed: the release is void.
    postprocessing.record_measurement(
        lab, tech, job_id, feature="flange thickness", designed_mm=3.0, measured_mm=3.1,
        tolerance_mm=0.3,
    )  # fmt: skip
    with read_session(lab.engine) as s:
        assert release.release_status(s, s.get(BuildJob, job_id)).state == "void"
    with pytest.raises(WrongState, match="not released"):
        release.record_delivery(lab, tech, job_id, delivered_to="OR 4, Dr Example")


def test_delivery_after_release(lab, people, tmp_path):
    manager = lab_manager(lab, people)
    job_id = printed_device(lab, people, tmp_path, device_type="anatomical_model")
    postprocessing.record_step(lab, people["tech"], job_id, "support_removal", {"method": "manual"})
    postprocessing.record_step(
        lab, people["tech"], job_id, "visual_check", {"finding": "no defects"}
    )
    postprocessing.record_measurement(
        lab, people["tech"], job_id, feature="aortic neck diameter", designed_mm=22.0,
        measured_mm=21.8, tolerance_mm=1.0,
    )  # fmt: skip
    release.release_device(lab, manager, job_id, PASSWORD)
    with pytest.raises(Invalid):
        release.record_delivery(lab, people["tech"], job_id, delivered_to=" ")
    release.record_delivery(
        lab, people["tech"], job_id, delivered_to="Dr Vascular, theatre 2", location="OR 2"
    )
    with pytest.raises(WrongState, match="already delivered"):
        release.record_delivery(lab, people["tech"], job_id, delivered_to="again")


def test_failed_qa_blocks_release_and_leads_to_reprint_or_scrap(lab, people, tmp_path):
    manager = lab_manager(lab, people)
    tech = people["tech"]
    job_id = printed_device(lab, people, tmp_path)
    record_guide_steps(lab, tech, job_id)
    with pytest.raises(WrongState, match="has not failed QA"):
        postprocessing.decide_failed_build(lab, tech, job_id, "scrap", "no reason to")
    postprocessing.record_measurement(
        lab, tech, job_id, feature="drill sleeve spacing", designed_mm=24.0,
        measured_mm=25.4, tolerance_mm=0.5,
    )  # fmt: skip
    with pytest.raises(WrongState, match="out of tolerance: drill sleeve spacing"):
        release.release_device(lab, manager, job_id, PASSWORD)
    with pytest.raises(Invalid, match="reason"):
        postprocessing.decide_failed_build(lab, tech, job_id, "reprint", "")
    new_id = postprocessing.decide_failed_build(
        lab, tech, job_id, "reprint", "warped: sleeve spacing 1.4 mm over"
    )
    with read_session(lab.engine) as s:
        old, new = s.get(BuildJob, job_id), s.get(BuildJob, new_id)
        assert new.state == JobState.SLICE_QUEUED and new.serial != old.serial
        assert (new.approval_id, new.mesh_sha256) == (old.approval_id, old.mesh_sha256)
        disposition = s.exec(select(QaDisposition)).one()
        assert (disposition.decision, disposition.reprint_job_id) == ("reprint", new_id)
    with pytest.raises(WrongState, match="reprinted or scrapped"):
        postprocessing.record_step(lab, tech, job_id, "wash", {"solvent": "IPA 99%", "minutes": 5})
    with pytest.raises(WrongState):
        release.release_device(lab, manager, job_id, PASSWORD)


def test_qa_photo_must_be_an_image_and_is_stored_by_hash(lab, people, tmp_path):
    job_id = printed_device(lab, people, tmp_path, device_type="anatomical_model")
    fake = tmp_path / "photo.jpg"
    fake.write_bytes(b"not an image at all")
    kwargs = dict(feature="height", designed_mm=20.0, measured_mm=20.1, tolerance_mm=0.5)
    with pytest.raises(Invalid, match="not a readable image"):
        postprocessing.record_measurement(lab, people["tech"], job_id, photo=fake, **kwargs)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buffer, format="PNG")
    photo = tmp_path / "photo.png"
    photo.write_bytes(buffer.getvalue())
    row_id = postprocessing.record_measurement(lab, people["tech"], job_id, photo=photo, **kwargs)
    with read_session(lab.engine) as s:
        row = s.get(postprocessing.QaMeasurement, row_id)
    assert row.passed and lab.blobs.verify(row.photo_sha256)


def test_post_processing_waits_for_an_accepted_print(lab, people, tmp_path):
    job_id = printed_device(lab, people, tmp_path)
    with unit_of_work(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        job.state, job.outcome = JobState.PRINTED, None
    with pytest.raises(WrongState, match="after the print is accepted"):
        postprocessing.record_step(
            lab, people["tech"], job_id, "support_removal", {"method": "manual"}
        )
    with unit_of_work(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        job.state, job.outcome = JobState.COMPLETED, "accepted"
    with pytest.raises(Invalid, match="not a step"):
        postprocessing.record_step(lab, people["tech"], job_id, "visual_check", {"finding": "x"})
    with pytest.raises(Invalid, match="Minutes|Time must be between"):
        postprocessing.record_step(
            lab, people["tech"], job_id, "wash", {"solvent": "IPA 99%", "minutes": 999}
        )


def test_checklist_catalogue_mistakes_are_named_and_the_shipped_one_loads():
    from pocprint.domain.checklists import ChecklistError, parse_catalogue

    with pytest.raises(ChecklistError, match="step wash: kind"):
        parse_catalogue({"steps": {"wash": {"kind": "sometimes"}}})
    with pytest.raises(ChecklistError, match="parameter solvent: choices"):
        parse_catalogue({"steps": {"wash": {"params": [{"name": "solvent", "type": "choice"}]}}})
    with pytest.raises(ChecklistError, match=r"device type guide: unknown steps \['polish'\]"):
        parse_catalogue({"steps": {}, "device_types": {"guide": {"steps": ["polish"]}}})
    shipped = postprocessing.catalogue()
    guide = shipped["surgical_guide"]
    assert [s.key for s in guide.steps] == [
        "support_removal",
        "wash",
        "cure",
        "dimensional_check",
        "sterilisation",
    ]
    sterilisation = guide.steps[-1]
    assert {p.name for p in sterilisation.params} == {"method", "cycle_id"}
    assert guide.sterile and not shipped["anatomical_model"].sterile
