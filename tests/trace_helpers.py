"""Helpers for the traceability tests: a lab manager, and a device whose print is done.

`printed_device` goes through the real services up to the design approval (case, upload,
analysis and repair, units, approval) and then writes what slicing and a verified print
leave on the build job, on the lab's first printer: the post-processing, QA and release
rules under test start from there. The end-to-end test covers the real slicer and printer.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import trimesh
from sqlmodel import select

from pocprint.domain.roles import Role
from pocprint.domain.states import JobState
from pocprint.services import cases as case_service
from pocprint.services.actors import Actor
from pocprint.services.mesh_processing import process_part
from pocprint.services.parts import confirm_units
from pocprint.services.users import authenticate, create_user
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Printer, utcnow

from conftest import PASSWORD


def lab_manager(lab, people) -> Actor:
    """The lab manager of the shared `people` fixture, or one made here."""
    if "manager" in people:
        return people["manager"]
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    create_user(
        lab, root, "manager", "Manager Tester", PASSWORD, {Role.LAB_MANAGER}, one_time=False
    )
    return authenticate(lab, "manager", PASSWORD)


def order(device_type: str = "surgical_guide") -> dict:
    """A complete order as the clinical gate requires it (custom-made, with a prescription)."""
    return dict(
        patient_code="PX-2001",
        indication="Mandibular reconstruction after resection",
        device_type=device_type,
        needed_by=date.today() + timedelta(days=3),
        ordering_clinician="Dr Ordering Surgeon",
        ordering_contact="ext 4711",
        icd10_code="C03.1",
        intended_use="intraoperative_guide"
        if device_type == "surgical_guide"
        else "surgical_planning",
        diagnostic_use=False,
        anatomy=[
            {"region": "Head", "subregion": "Face", "structure": "Mandible", "laterality": "left"}
        ],
        regulatory_route="custom_made",
        prescriber_name="Dr Prescribing Surgeon",
        prescriber_qualification="Consultant maxillofacial surgeon, GMC 1234567",
        design_characteristics="Cutting guide, 3 mm flange, two 2.0 mm drill sleeves 24 mm apart",
        material="PLA",  # as prescribed
    )


def printed_device(
    lab,
    people,
    tmp_path,
    device_type: str = "surgical_guide",
    started_at=None,
    filament_g=12.5,
    printer: str | None = None,
    profile_sha256: str = "a" * 64,
    imaging: dict | None = None,
) -> int:
    """A build job whose print finished and was accepted; returns its id. `imaging`: the
    study a PACS lookup found for the order."""
    tech, rad = people["tech"], people["rad"]
    case_id = case_service.create_case(lab, tech, imaging=imaging, **order(device_type))
    mesh = tmp_path / f"guide-{case_id}.stl"
    trimesh.creation.box(extents=(40, 30, 20)).export(mesh)
    part_id = case_service.upload_part(lab, tech, case_id, "guide.stl", mesh)
    assert process_part(lab, part_id)
    if confirm_units_needed(lab, part_id):
        confirm_units(lab, tech, part_id, "mm")
        assert process_part(lab, part_id)
    job_id = case_service.approve_design(lab, rad, part_id, PASSWORD)
    gcode = f"; G-code of job {job_id}\n".encode()
    started = started_at or utcnow()
    with unit_of_work(lab.engine) as s:
        query = select(Printer).order_by(Printer.id)
        if printer is not None:
            query = query.where(Printer.name == printer)
        row = s.exec(query).first()
        job = s.get(BuildJob, job_id)
        job.state = JobState.COMPLETED
        job.outcome = "accepted"
        job.outcome_by = tech.user_id
        job.outcome_at = utcnow()
        job.gcode_sha256 = hashlib.sha256(gcode).hexdigest()
        job.gcode_sha1 = job.printer_sha1 = hashlib.sha1(gcode).hexdigest()  # noqa: S324
        job.gcode_bytes = len(gcode)
        job.slicer_name, job.slicer_version = "PrusaSlicer", "2.5.0"
        job.profile_sha256 = profile_sha256
        job.filament_g = filament_g
        job.sliced_at = started - timedelta(minutes=30)
        job.printer_id = row.id
        job.remote_name = f"{job.serial}.gcode"
        job.dispatched_at = started - timedelta(minutes=1)
        job.started_at = started
        job.finished_at = max(started, utcnow())
    return job_id


def confirm_units_needed(lab, part_id: int) -> bool:
    from pocprint.store.db import read_session
    from pocprint.store.models import Part

    with read_session(lab.engine) as s:
        return s.get(Part, part_id).state == "awaiting_units"
