"""Use cases on a real database (SQLite, and PostgreSQL when configured): roles, gates,
bad uploads leaving nothing behind, the audit chain and restart recovery."""

from __future__ import annotations

import struct
from datetime import date, timedelta

import numpy as np
import pytest
from sqlmodel import select

from pocprint.domain.states import JobState, PartState
from pocprint.services import cases as case_service
from pocprint.services.errors import AuthFailed, BadMesh, Forbidden, Invalid, NotApproved
from pocprint.services.mesh_processing import process_part
from pocprint.services.parts import accept_repair, confirm_units
from pocprint.services.slicing import slice_job
from pocprint.services.sweeper import recover
from pocprint.services.users import authenticate, bootstrap_admin
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import Approval, AuditEvent, BuildJob, Part, User

from conftest import PASSWORD, order_fields

SOON = date.today() + timedelta(days=7)


def new_case(lab, actor) -> int:
    return case_service.create_case(lab, actor, **order_fields(needed_by=SOON))


def cube_stl(path, size=20.0):
    """A closed binary STL cube written by hand (12 triangles)."""
    import trimesh

    trimesh.creation.box(extents=(size, size, size)).export(path)
    return path


def blob_files(lab) -> list:
    return [p for p in lab.blobs.root.rglob("*") if p.is_file()]


def events(lab, action=None) -> list[AuditEvent]:
    with read_session(lab.engine) as s:
        q = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            q = q.where(AuditEvent.action == action)
        return s.exec(q).all()


def test_only_technicians_and_prescribers_create_cases(lab, people):
    assert new_case(lab, people["tech"]) > 0
    assert new_case(lab, people["presc"]) > 0
    for name in ("rad", "auditor", "admin", "manager"):
        with pytest.raises(Forbidden):
            new_case(lab, people[name])


def test_case_with_a_name_instead_of_a_code_is_refused(lab, people):
    with pytest.raises(Invalid, match="pseudonymous"):
        case_service.create_case(lab, people["tech"], **order_fields(patient_code="Jane Doe"))


def test_first_admin_gets_a_random_password_only_once(lab):
    password = bootstrap_admin(lab)
    assert len(password) >= 16
    assert authenticate(lab, "admin", password).username == "admin"
    with pytest.raises(Invalid):
        bootstrap_admin(lab)
    with read_session(lab.engine) as s:
        stored = s.exec(select(User.password_hash)).one()
    assert stored.startswith("$argon2") and password not in stored


def test_the_service_hashes_with_argon2id_at_full_cost_unless_the_test_switch_is_set(
    monkeypatch,
):
    from pocprint.services import users

    monkeypatch.delenv(users.CHEAP_HASHES_FOR_TESTS)
    hasher = users._make_hasher()
    # RFC 9106 low-memory profile (OWASP minimum: 19 MiB, 2 passes).
    assert (hasher.time_cost, hasher.memory_cost, hasher.type.name) == (3, 65536, "ID")
    monkeypatch.setenv(users.CHEAP_HASHES_FOR_TESTS, "1")
    assert users._make_hasher().memory_cost < 65536


def test_wrong_password_is_refused_and_audited(lab, people):
    with pytest.raises(AuthFailed):
        authenticate(lab, "tech", "not the password")
    assert events(lab, "user.login_failed")


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("empty.stl", b"", "empty"),
        ("truncated.stl", b"\0" * 80 + struct.pack("<I", 10) + b"\0" * 120, "truncated"),
        ("photo.stl", b"\x89PNG\r\n\x1a\n" + b"\0" * 400, "not_a_mesh"),
        ("notes.stl", b"Dear colleague, please print this.\n" * 20, "not_a_mesh"),
        ("model.dwg", b"AC1032" + b"\0" * 200, "unsupported_format"),
    ],
)
def test_bad_upload_is_refused_and_leaves_nothing(lab, people, tmp_path, name, content, code):
    case_id = new_case(lab, people["tech"])
    path = tmp_path / "upload"
    path.write_bytes(content)
    before = len(events(lab))
    with pytest.raises(BadMesh) as err:
        case_service.upload_part(lab, people["tech"], case_id, name, path)
    assert err.value.code == code
    assert len(str(err.value)) > 15
    assert blob_files(lab) == []
    with read_session(lab.engine) as s:
        assert s.exec(select(Part)).all() == []
    assert len(events(lab)) == before


def test_oversize_upload_is_refused(lab, people, tmp_path):
    lab.settings = lab.settings.with_(max_upload_bytes=500)
    case_id = new_case(lab, people["tech"])
    path = cube_stl(tmp_path / "cube.stl")
    with pytest.raises(BadMesh) as err:
        case_service.upload_part(lab, people["tech"], case_id, "cube.stl", path)
    assert err.value.code == "too_large"
    assert blob_files(lab) == []


def test_upload_is_stored_once_by_hash(lab, people, tmp_path):
    case_id = new_case(lab, people["tech"])
    path = cube_stl(tmp_path / "cube.stl")
    first = case_service.upload_part(lab, people["tech"], case_id, "a.stl", path)
    second = case_service.upload_part(lab, people["tech"], case_id, "b.stl", path)
    assert first != second
    assert len(blob_files(lab)) == 1
    with read_session(lab.engine) as s:
        parts = s.exec(select(Part)).all()
    assert {p.source_sha256 for p in parts} == {blob_files(lab)[0].name}
    assert all(p.state == PartState.QUEUED for p in parts)


def _processed_part(lab, people, tmp_path) -> int:
    """A 20 mm cube: its unit is not clear-cut (2 cm would be as plausible), so the
    technician confirms millimetres before the repair runs."""
    case_id = new_case(lab, people["tech"])
    part_id = case_service.upload_part(
        lab, people["tech"], case_id, "cube.stl", cube_stl(tmp_path / "cube.stl")
    )
    assert process_part(lab, part_id)
    confirm_units(lab, people["tech"], part_id, "mm")
    assert process_part(lab, part_id)
    return part_id


def test_unclear_unit_waits_for_the_technician(lab, people, tmp_path):
    case_id = new_case(lab, people["tech"])
    part_id = case_service.upload_part(
        lab, people["tech"], case_id, "cube.stl", cube_stl(tmp_path / "cube.stl", 2.0)
    )
    assert process_part(lab, part_id)
    with read_session(lab.engine) as s:
        part = s.get(Part, part_id)
    assert part.state == PartState.AWAITING_UNITS and part.units is None
    assert part.units_guess["clear"] is False and part.units_guess["reasons"]
    with pytest.raises(Forbidden):
        confirm_units(lab, people["rad"], part_id, "cm")
    with pytest.raises(Invalid):
        confirm_units(lab, people["tech"], part_id, "furlong")
    confirm_units(lab, people["tech"], part_id, "cm")
    assert process_part(lab, part_id)
    with read_session(lab.engine) as s:
        part = s.get(Part, part_id)
    assert part.state == PartState.PROCESSED and part.units == "cm" and part.scale_to_mm == 10
    assert part.analysis_after["extents"] == pytest.approx([20.0, 20.0, 20.0])
    confirmed = events(lab, "part.units_confirmed")
    assert confirmed[0].actor == "tech" and confirmed[0].after["units"] == "cm"


def test_needs_attention_is_approved_only_after_a_technician_accepts_it(lab, people, tmp_path):
    import trimesh

    open_box = trimesh.creation.box(extents=(40, 40, 40))
    open_box.update_faces(np.arange(len(open_box.faces)) > 1)  # one side missing: a 40 mm hole
    path = tmp_path / "open.stl"
    open_box.export(path)
    case_id = new_case(lab, people["tech"])
    part_id = case_service.upload_part(lab, people["tech"], case_id, "open.stl", path)
    assert process_part(lab, part_id)
    if events(lab, "part.units_unclear"):
        confirm_units(lab, people["tech"], part_id, "mm")
        assert process_part(lab, part_id)
    with read_session(lab.engine) as s:
        part = s.get(Part, part_id)
    assert part.verdict == "needs_attention" and part.repair_report["reasons"]
    with pytest.raises(NotApproved, match="no technician has accepted"):
        case_service.approve_design(lab, people["rad"], part_id, PASSWORD)
    with pytest.raises(Invalid):
        accept_repair(lab, people["tech"], part_id, "ok")  # a reason, not a shrug
    with pytest.raises(Forbidden):
        accept_repair(lab, people["rad"], part_id, "looks fine to me, print it")
    accept_repair(lab, people["tech"], part_id, "open side is the cut plane the surgeon asked for")
    accepted = events(lab, "part.repair_accepted")
    assert accepted[0].actor == "tech" and "cut plane" in accepted[0].reason
    job_id = case_service.approve_design(lab, people["rad"], part_id, PASSWORD)
    assert job_id > 0


def test_only_a_radiologist_with_the_password_approves(lab, people, tmp_path):
    part_id = _processed_part(lab, people, tmp_path)
    with pytest.raises(Forbidden):
        case_service.approve_design(lab, people["tech"], part_id, PASSWORD)
    with pytest.raises(AuthFailed):
        case_service.approve_design(lab, people["rad"], part_id, "guess")
    job_id = case_service.approve_design(lab, people["rad"], part_id, PASSWORD, "fine")
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        approval = s.get(Approval, job.approval_id)
        part = s.get(Part, part_id)
    assert job.state == JobState.SLICE_QUEUED
    assert approval.content_sha256 == part.repaired_sha256 == job.mesh_sha256
    assert approval.signer_name == "Rad Tester" and approval.meaning == "approved design"
    with pytest.raises(Exception, match="only an analysed"):
        case_service.approve_design(lab, people["rad"], part_id, PASSWORD)


def test_unapproved_part_cannot_be_approved_before_repair(lab, people, tmp_path):
    case_id = new_case(lab, people["tech"])
    part_id = case_service.upload_part(
        lab, people["tech"], case_id, "cube.stl", cube_stl(tmp_path / "cube.stl")
    )
    with pytest.raises(Exception, match="queued"):
        case_service.approve_design(lab, people["rad"], part_id, PASSWORD)


def test_slicing_refuses_a_mesh_that_changed_after_approval(lab, people, tmp_path):
    part_id = _processed_part(lab, people, tmp_path)
    job_id = case_service.approve_design(lab, people["rad"], part_id, PASSWORD)
    with unit_of_work(lab.engine) as s:  # someone swaps the repaired mesh behind the gate
        s.get(Part, part_id).repaired_sha256 = "f" * 64
    assert slice_job(lab, job_id)
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
    assert job.state == JobState.SLICE_FAILED
    assert "design approval: void" in job.error
    assert job.gcode_sha256 is None
    with unit_of_work(lab.engine) as s, pytest.raises(NotApproved):
        case_service.require_current_approval(s, s.get(BuildJob, job_id))


def test_recovery_requeues_cut_off_steps(lab, people, tmp_path):
    part_id = _processed_part(lab, people, tmp_path)
    job_id = case_service.approve_design(lab, people["rad"], part_id, PASSWORD)
    case_id = new_case(lab, people["tech"])
    other = case_service.upload_part(
        lab, people["tech"], case_id, "c.stl", cube_stl(tmp_path / "c.stl", 10)
    )
    with unit_of_work(lab.engine) as s:  # as a crash would leave them
        s.get(BuildJob, job_id).state = JobState.SLICING
        s.get(Part, other).state = PartState.PROCESSING
    counts = recover(lab)
    assert counts["jobs_requeued"] == 1 and counts["parts_requeued"] == 1
    with read_session(lab.engine) as s:
        assert s.get(BuildJob, job_id).state == JobState.SLICE_QUEUED
        assert s.get(Part, other).state == PartState.QUEUED
    assert {e.action for e in events(lab)} >= {"job.lease_expired", "part.lease_expired"}


def test_printer_without_its_api_key_shows_the_reason_instead_of_failing(lab):
    from pocprint.services.polling import poll_printers
    from pocprint.store.models import Printer

    (lab.settings.secrets_dir / "bench-offline.key").unlink()
    lab._connectors.clear()
    assert poll_printers(lab) == 1
    with read_session(lab.engine) as s:
        printer = s.exec(select(Printer)).one()
    assert printer.state == "error"
    assert "API key" in printer.error and "bench-offline.key" in printer.error


def test_several_named_parts_per_case(lab, people, tmp_path):
    case_id = new_case(lab, people["tech"])
    bone = case_service.upload_part(
        lab, people["tech"], case_id, "a.stl", cube_stl(tmp_path / "a.stl", 30), "bone"
    )
    tumour = case_service.upload_part(
        lab, people["tech"], case_id, "b.stl", cube_stl(tmp_path / "b.stl", 12), "tumour"
    )
    unnamed = case_service.upload_part(
        lab, people["tech"], case_id, "c.stl", cube_stl(tmp_path / "c.stl", 8)
    )
    with read_session(lab.engine) as s:
        labels = [s.get(Part, i).label for i in (bone, tumour, unnamed)]
    assert labels == ["bone", "tumour", "Part 3"]
