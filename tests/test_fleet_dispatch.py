"""Dispatch on two real OctoPrint servers with virtual printers (and the real slicer and a
real database): jobs routed by material and build volume, never started before plate-clear,
earliest needed-by date first, the urgent override; a printer killed mid-print leaves an
interrupted job and is never sent anything twice, also after a service restart; pause,
resume and cancel from the tablet with reasons."""

from __future__ import annotations

import pytest
import requests
from sqlmodel import select

from pocprint.domain.states import JobState
from pocprint.services import dispatch, jobs
from pocprint.services.errors import PrinterProblem
from pocprint.services.lab import build_lab
from pocprint.services.polling import poll_printers
from pocprint.services.slicing import slice_job
from pocprint.services.sweeper import recover
from pocprint.store.db import read_session
from pocprint.store.models import AuditEvent, JobSlice

from conftest import write_printer
from fleet_helpers import (
    PETG_250,
    PLA_180,
    PLA_250,
    box,
    cleared_job,
    fleet_lab,
    job,
    printer_named,
)
from octoprint_fixtures import octoprint_or_skip, running_octoprint, wait_for

pytestmark = [pytest.mark.octoprint, pytest.mark.slicer]


@pytest.fixture(scope="module")
def two_printers(tmp_path_factory):
    """Printer A: big bed, loaded with PETG. Printer B: small bed, loaded with PLA."""
    octoprint_or_skip()
    with (
        running_octoprint(tmp_path_factory.mktemp("octo-a")) as a,
        running_octoprint(tmp_path_factory.mktemp("octo-b")) as b,
    ):
        yield a, b


def octo_files(server) -> dict[str, dict]:
    files = requests.get(
        f"{server.url}/api/files?recursive=true",
        headers={"X-Api-Key": server.api_key},
        timeout=10,
    ).json()["files"]
    return {f["name"]: f for f in files}


def octo_state(server) -> str:
    return requests.get(
        f"{server.url}/api/job", headers={"X-Api-Key": server.api_key}, timeout=10
    ).json()["state"]


def dispatch_count(lab, serial: str) -> int:
    with read_session(lab.engine) as s:
        return len(
            s.exec(
                select(AuditEvent.id).where(
                    AuditEvent.entity_id == serial, AuditEvent.action == "job.dispatching"
                )
            ).all()
        )


def until_state(lab, job_id: int, states, timeout: float = 90):
    def probe():
        poll_printers(lab)
        found = job(lab, job_id)
        return found if found.state in states else None

    return wait_for(probe, timeout, f"job {job_id} to reach {states}", interval=0.3)


def until_printer(lab, name: str, state: str, timeout: float = 60):
    def probe():
        poll_printers(lab)
        return printer_named(lab, name).state == state

    return wait_for(probe, timeout, f"{name} to be {state}", interval=0.3)


def idle(server) -> None:
    """Leave the OctoPrint server idle and empty whatever a previous test did (the servers
    are shared by the SQLite and PostgreSQL runs of the module)."""
    if octo_state(server) in ("Printing", "Paused"):
        requests.post(
            f"{server.url}/api/job",
            json={"command": "cancel"},
            headers={"X-Api-Key": server.api_key},
            timeout=10,
        )
    wait_for(lambda: octo_state(server) == "Operational", 30, "OctoPrint to be operational")
    for name in octo_files(server):
        requests.delete(
            f"{server.url}/api/files/local/{name}",
            headers={"X-Api-Key": server.api_key},
            timeout=10,
        ).raise_for_status()


def slice_of(lab, job_id: int, profile: str) -> JobSlice:
    with read_session(lab.engine) as s:
        return s.exec(
            select(JobSlice).where(JobSlice.job_id == job_id, JobSlice.profile_id == profile)
        ).one()


def test_routing_by_material_and_volume_in_deadline_order_after_plate_clear(
    tmp_path, database_url, two_printers
):
    a, b = two_printers
    idle(a), idle(b)
    d = tmp_path / "printers"
    write_printer(d, "octo-a", a.url, key=a.api_key, material="PETG", profiles=[PLA_250, PETG_250])
    write_printer(
        d, "octo-b", b.url, key=b.api_key, profiles=[PLA_180], build_volume_mm=[180, 180, 180]
    )
    lab, people = fleet_lab(tmp_path, database_url, d)
    tech = people["tech"]
    small = box(tmp_path, (20, 20, 4))
    guide = cleared_job(lab, people, small, device_type="surgical_guide", days=6)
    # The orders name the material: the guide, the big part and the late job PETG, the job
    # due soonest PLA. A job never goes out in another material than its order's.
    big = cleared_job(
        lab, people, box(tmp_path, (200, 10, 3)), days=8, patient_code="PX-0002", material="PETG"
    )
    late = cleared_job(lab, people, small, days=9, patient_code="PX-0003", material="PETG")
    soon = cleared_job(lab, people, small, days=2, patient_code="PX-0004")
    for job_id in (guide, big, late, soon):
        assert slice_job(lab, job_id) and job(lab, job_id).state == JobState.READY
    until_printer(lab, "octo-a", "idle")
    until_printer(lab, "octo-b", "idle")
    a_id, b_id = printer_named(lab, "octo-a").id, printer_named(lab, "octo-b").id

    # Idle printers, ready jobs, but no plate confirmed clear: nothing starts.
    assert dispatch.dispatch_ready_jobs(lab) == 0
    assert {job(lab, j).state for j in (guide, big, late, soon)} == {JobState.READY}
    assert octo_files(a) == {} and octo_files(b) == {}

    # B (small, PLA) takes the most urgent job it can: the guide, the big part and the late
    # job are ordered in PETG, so the job due soonest goes, with the slice made for B's bed.
    dispatch.confirm_plate_clear(lab, tech, b_id)
    assert dispatch.dispatch_ready_jobs(lab) == 1
    on_b = job(lab, soon)
    assert on_b.state == JobState.PRINTING and on_b.printer_id == b_id
    assert on_b.profile_id == PLA_180 and on_b.material == "PLA"
    chosen = slice_of(lab, soon, PLA_180)
    assert on_b.gcode_sha256 == chosen.gcode_sha256
    assert on_b.printer_sha1 == chosen.gcode_sha1 == octo_files(b)[f"{on_b.serial}.gcode"]["hash"]
    assert on_b.printer_report["verified_upload"]["redownload_sha256"] == chosen.gcode_sha256
    assert not printer_named(lab, "octo-b").plate_clear  # consumed by this job

    # The urgent override puts the latest job first on A, in its ordered material (PETG).
    jobs.set_urgent(lab, tech, late, True, "surgery brought forward")
    dispatch.confirm_plate_clear(lab, tech, a_id)
    assert dispatch.dispatch_ready_jobs(lab) == 1
    on_a = job(lab, late)
    assert on_a.state == JobState.PRINTING and on_a.printer_id == a_id
    assert on_a.profile_id == PETG_250 and on_a.material == "PETG"
    assert job(lab, guide).state == JobState.READY and job(lab, big).state == JobState.READY

    assert until_state(lab, soon, {JobState.PRINTED}).state == JobState.PRINTED
    assert until_state(lab, late, {JobState.PRINTED}).state == JobState.PRINTED

    # B is clear again, but neither remaining job may go there: the plate stays clear.
    until_printer(lab, "octo-b", "idle")
    dispatch.confirm_plate_clear(lab, tech, b_id)
    assert dispatch.dispatch_ready_jobs(lab) == 0
    assert printer_named(lab, "octo-b").plate_clear

    # A: the guide (needed by day 6) before the big part (day 8).
    until_printer(lab, "octo-a", "idle")
    dispatch.confirm_plate_clear(lab, tech, a_id)
    assert dispatch.dispatch_ready_jobs(lab) == 1
    assert job(lab, guide).printer_id == a_id and job(lab, guide).profile_id == PETG_250
    assert job(lab, big).state == JobState.READY
    jobs.cancel_job(lab, tech, guide, "test over: plate needed")
    assert job(lab, guide).cancel_reason == "test over: plate needed"
    until_printer(lab, "octo-a", "idle")
    dispatch.confirm_plate_clear(lab, tech, a_id)
    assert dispatch.dispatch_ready_jobs(lab) == 1
    assert job(lab, big).printer_id == a_id and job(lab, big).material == "PETG"
    jobs.cancel_job(lab, tech, big, "test over")

    for job_id in (guide, big, late, soon):
        assert dispatch_count(lab, job(lab, job_id).serial) == 1
    lab.engine.dispose()


def test_printer_killed_mid_print_is_interrupted_and_nothing_is_sent_twice(tmp_path, database_url):
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octo-k") as srv:
        d = tmp_path / "printers"
        write_printer(d, "octo-k", srv.url, key=srv.api_key, profiles=[PLA_250])
        lab, people = fleet_lab(tmp_path, database_url, d)
        tech = people["tech"]
        long_job = cleared_job(lab, people, box(tmp_path, (60, 60, 20)), days=2)
        next_job = cleared_job(
            lab, people, box(tmp_path, (20, 20, 4)), days=3, patient_code="PX-0002"
        )
        for job_id in (long_job, next_job):
            assert slice_job(lab, job_id)
        until_printer(lab, "octo-k", "idle")
        printer_id = printer_named(lab, "octo-k").id
        dispatch.confirm_plate_clear(lab, tech, printer_id)
        assert dispatch.dispatch_ready_jobs(lab) == 1
        serial = job(lab, long_job).serial
        until_printer(lab, "octo-k", "printing")

        # Pause and resume from the tablet, each with a reason, on the real printer.
        jobs.pause_job(lab, tech, long_job, "check first layer adhesion")
        until_printer(lab, "octo-k", "paused")
        assert octo_state(srv) == "Paused"
        jobs.resume_job(lab, tech, long_job, "adhesion fine")
        until_printer(lab, "octo-k", "printing")
        controls = [(c["action"], c["by"], c["reason"]) for c in job(lab, long_job).controls]
        assert controls == [
            ("pause", "tech", "check first layer adhesion"),
            ("resume", "tech", "adhesion fine"),
        ]

        # The printer's host disappears mid-print.
        srv.kill()
        interrupted = until_state(lab, long_job, {JobState.INTERRUPTED, JobState.PRINTED}, 30)
        assert interrupted.state == JobState.INTERRUPTED
        assert "lost contact" in interrupted.error
        assert printer_named(lab, "octo-k").state == "offline"
        assert dispatch.dispatch_ready_jobs(lab) == 0
        with pytest.raises(PrinterProblem, match="still holds job"):
            dispatch.confirm_plate_clear(lab, tech, printer_id)

        # It comes back idle; the job stays interrupted, nothing else is sent.
        srv.start()
        until_printer(lab, "octo-k", "idle", 60)
        assert job(lab, long_job).state == JobState.INTERRUPTED
        assert dispatch.dispatch_ready_jobs(lab) == 0

        # The service restarts: recovery and the worker steps send nothing twice.
        lab.engine.dispose()
        lab = build_lab(lab.settings)
        recover(lab)
        poll_printers(lab)
        assert dispatch.dispatch_ready_jobs(lab) == 0
        assert job(lab, long_job).state == JobState.INTERRUPTED
        assert job(lab, next_job).state == JobState.READY
        assert set(octo_files(srv)) == {f"{serial}.gcode"}
        assert dispatch_count(lab, serial) == 1

        # The technician decides, clears the plate, and only then the next job goes.
        again = jobs.resolve_interrupted(lab, tech, long_job, "reprint", "half printed, scrapped")
        assert job(lab, long_job).state == JobState.FAILED
        assert job(lab, long_job).controls[-1]["action"] == "resolve_reprint"
        reprint = job(lab, again)
        assert reprint.state == JobState.SLICE_QUEUED and reprint.serial != serial
        assert reprint.mesh_sha256 == job(lab, long_job).mesh_sha256
        dispatch.confirm_plate_clear(lab, tech, printer_id)
        assert dispatch.dispatch_ready_jobs(lab) == 1
        assert job(lab, next_job).state == JobState.PRINTING
        jobs.cancel_job(lab, tech, next_job, "end of test")
        wait_for(lambda: octo_state(srv) == "Operational", 30, "the cancel to reach the printer")
        cancelled = job(lab, next_job)
        assert cancelled.state == JobState.CANCELLED
        assert [c["action"] for c in cancelled.controls] == ["cancel"]
        assert dispatch_count(lab, serial) == 1
        lab.engine.dispose()
