"""The lifecycle defects found by trying the product (issue 10), each reproduced on the real
services, a real database, the real slicer and, where a printer is involved, a real OctoPrint.

A technician's action is interleaved with a worker step at the exact point the race happens
(for example, a cancel while PrusaSlicer runs): the step must lose cleanly, never overwrite.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from pocprint.domain.states import JobState, PartState
from pocprint.services import (
    cases,
    dispatch,
    gate,
    jobs,
    mesh_processing,
    parts,
    polling,
    review,
    slicing,
)
from pocprint.services.lab import build_lab
from pocprint.slicing.prusaslicer import SlicerError
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import AuditEvent, BuildJob, Case, Part, Printer

from conftest import PASSWORD, write_printer
from fleet_helpers import PLA_250, box, cleared_job, fleet_lab, job, printer_named
from octoprint_fixtures import (
    LONG_FEED,
    LONG_MOVES,
    octoprint_or_skip,
    running_octoprint,
    wait_for,
    write_gcode,
)

pytestmark = [pytest.mark.slicer]


def events(lab, entity_id: str, action: str | None = None) -> list[AuditEvent]:
    with read_session(lab.engine) as s:
        query = select(AuditEvent).where(AuditEvent.entity_id == str(entity_id))
        if action:
            query = query.where(AuditEvent.action == action)
        return list(s.exec(query.order_by(AuditEvent.id)).all())


def design_signature_id(lab, part_id: int) -> int:
    with read_session(lab.engine) as s:
        part = s.get(Part, part_id)
        return gate.design_step(s, part, s.get(Case, part.case_id)).signature.id


# ----------------------------------------------------------- 1. a cancelled job comes back


def test_a_job_cancelled_while_slicing_stays_cancelled(tmp_path, database_url, printers_dir):
    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    job_id = cleared_job(lab, people, box(tmp_path))
    real_slicer = slicing.slice_mesh

    def technician_cancels_while_slicer_runs(*args, **kwargs):
        jobs.cancel_job(lab, people["tech"], job_id, "surgery cancelled")
        return real_slicer(*args, **kwargs)

    slicing.slice_mesh = technician_cancels_while_slicer_runs
    try:
        slicing.slice_job(lab, job_id)
    finally:
        slicing.slice_mesh = real_slicer
    cancelled = job(lab, job_id)
    assert cancelled.state == JobState.CANCELLED
    assert cancelled.cancel_reason == "surgery cancelled"
    assert not [e for e in events(lab, cancelled.serial) if e.action == "job.sliced"]
    lab.engine.dispose()


def test_a_job_cancelled_while_slicing_stays_cancelled_when_the_slicer_fails(
    tmp_path, database_url, printers_dir
):
    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    job_id = cleared_job(lab, people, box(tmp_path))
    real_slicer = slicing.slice_mesh

    def cancel_then_fail(*_args, **_kwargs):
        jobs.cancel_job(lab, people["tech"], job_id, "surgery cancelled")
        raise SlicerError("No layers were detected.")

    slicing.slice_mesh = cancel_then_fail
    try:
        slicing.slice_job(lab, job_id)
    finally:
        slicing.slice_mesh = real_slicer
    assert job(lab, job_id).state == JobState.CANCELLED
    lab.engine.dispose()


# ------------------------------------------ 2. a withdrawn or void approval can be signed again


def test_a_withdrawn_design_approval_can_be_signed_again(tmp_path, database_url, printers_dir):
    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    first = cleared_job(lab, people, box(tmp_path))
    part_id = job(lab, first).part_id
    review.withdraw_signoff(
        lab, people["rad"], design_signature_id(lab, part_id), PASSWORD, "wrong part signed"
    )
    with read_session(lab.engine) as s:
        assert s.get(Part, part_id).state == PartState.PROCESSED  # back to the approval step
    # The job made under the withdrawn approval never goes on.
    assert job(lab, first).state == JobState.CANCELLED
    assert "withdrawn" in job(lab, first).cancel_reason
    second = cases.approve_design(lab, people["rad"], part_id, PASSWORD)
    assert second != first
    assert job(lab, second).state == JobState.SLICE_QUEUED
    with read_session(lab.engine) as s:
        assert s.get(Part, part_id).state == PartState.APPROVED
    lab.engine.dispose()


def test_a_design_approval_voided_by_a_prescription_change_can_be_signed_again(
    tmp_path, database_url, printers_dir
):
    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    first = cleared_job(lab, people, box(tmp_path), device_type="surgical_guide")
    part_id, case_id = job(lab, first).part_id, job(lab, first).case_id
    cases.update_case(
        lab, people["tech"], case_id, design_characteristics="Guide with two 2.5 mm sleeves"
    )
    with read_session(lab.engine) as s:
        assert s.get(Part, part_id).state == PartState.PROCESSED
    assert job(lab, first).state == JobState.CANCELLED
    second = cases.approve_design(lab, people["presc"], part_id, PASSWORD)
    assert job(lab, second).state == JobState.SLICE_QUEUED
    lab.engine.dispose()


# --------------------------------------------------- 4. worker errors leave work stuck


def test_an_unexpected_slicing_error_is_retried_not_left_slicing(
    tmp_path, database_url, printers_dir
):
    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    job_id = cleared_job(lab, people, box(tmp_path))
    real_load = slicing.trimesh.load_mesh
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("simulated: no memory for the mesh")
        return real_load(*args, **kwargs)

    slicing.trimesh.load_mesh = fails_once
    try:
        slicing.slice_job(lab, job_id)
        waiting = job(lab, job_id)
        assert waiting.state == JobState.SLICE_QUEUED  # transient: queued again, not stuck
        assert "MemoryError" in waiting.error and waiting.retry_at is not None
        with unit_of_work(lab.engine) as s:  # the back-off has passed
            s.get(BuildJob, job_id).retry_at = waiting.retry_at - timedelta(hours=1)
        slicing.slice_waiting_jobs(lab)
    finally:
        slicing.trimesh.load_mesh = real_load
    assert job(lab, job_id).state == JobState.READY
    lab.engine.dispose()


def test_a_transient_mesh_error_is_retried_not_rejected_for_good(
    tmp_path, database_url, printers_dir
):
    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    from conftest import order_fields

    case_id = cases.create_case(lab, people["tech"], **order_fields())
    part_id = cases.upload_part(lab, people["tech"], case_id, "p.stl", box(tmp_path))
    mesh_processing.process_part(lab, part_id)  # a 20 mm box: the unit is asked for
    parts.confirm_units(lab, people["tech"], part_id, "mm")
    real_run = mesh_processing.run_bounded
    calls = []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real_run(*args, **kwargs)

    mesh_processing.run_bounded = fails_once
    try:
        mesh_processing.process_part(lab, part_id)
        with read_session(lab.engine) as s:
            part = s.get(Part, part_id)
        assert part.state == PartState.QUEUED and "No space left" in part.error
        with unit_of_work(lab.engine) as s:
            s.get(Part, part_id).retry_at = part.retry_at - timedelta(hours=1)
        mesh_processing.process_waiting_parts(lab)
    finally:
        mesh_processing.run_bounded = real_run
    with read_session(lab.engine) as s:
        assert s.get(Part, part_id).state == PartState.PROCESSED
    lab.engine.dispose()


def test_a_step_cut_off_in_a_running_service_is_swept_without_a_restart(
    tmp_path, database_url, printers_dir
):
    """A slicing step whose worker died (its lease expired) is queued again by the sweeper
    of a running worker: recovery no longer waits for a restart."""
    from pocprint.services.sweeper import sweep

    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    job_id = cleared_job(lab, people, box(tmp_path))
    with unit_of_work(lab.engine) as s:  # a worker on another machine claimed it, then died
        row = s.get(BuildJob, job_id)
        row.state = JobState.SLICING
        row.lease_owner = "other-host:4242:0"
        row.lease_expires_at = row.created_at - timedelta(minutes=1)
    counts = sweep(lab)
    assert counts["jobs_requeued"] == 1
    assert job(lab, job_id).state == JobState.SLICE_QUEUED
    assert [e.reason for e in events(lab, job(lab, job_id).serial, "job.lease_expired")]
    lab.engine.dispose()


# ---------------------------------------------------- 5. a job sent onto an occupied plate


def test_at_most_one_active_job_per_printer_is_a_database_rule(
    tmp_path, database_url, printers_dir
):
    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    first = cleared_job(lab, people, box(tmp_path))
    second = cleared_job(lab, people, box(tmp_path), patient_code="PX-0002")
    printer = printer_named(lab, "bench-offline")
    with unit_of_work(lab.engine) as s:
        row = s.get(BuildJob, first)
        row.state, row.printer_id = JobState.PRINTING, printer.id
    with pytest.raises(IntegrityError), unit_of_work(lab.engine) as s:
        row = s.get(BuildJob, second)
        row.state, row.printer_id = JobState.DISPATCHING, printer.id
    lab.engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_printer_that_changed_after_planning_is_not_claimed(tmp_path, database_url, printers_dir):
    """Between planning and the claim another process saw the printer start a print of its
    own: the claim is a conditional update and leaves the job waiting. (PostgreSQL only:
    on SQLite the dispatcher's BEGIN IMMEDIATE keeps every other writer out meanwhile.)"""
    lab, people = fleet_lab(tmp_path, database_url, printers_dir)
    job_id = cleared_job(lab, people, box(tmp_path))
    assert slicing.slice_job(lab, job_id)
    printer = printer_named(lab, "bench-offline")
    with unit_of_work(lab.engine) as s:
        row = s.get(Printer, printer.id)
        row.state, row.plate_clear, row.failed_polls = "idle", True, 0
    real_plan = dispatch.plan

    def printer_busy_meanwhile(*args, **kwargs):
        chosen = real_plan(*args, **kwargs)
        engine = build_lab(lab.settings).engine  # another process's connection
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE printer SET state = 'printing', plate_clear = false WHERE id = :id"
                ),
                {"id": printer.id},
            )
        engine.dispose()
        return chosen

    dispatch.plan = printer_busy_meanwhile
    try:
        dispatch.dispatch_ready_jobs(lab)
    finally:
        dispatch.plan = real_plan
    assert job(lab, job_id).state == JobState.READY
    assert not events(lab, job(lab, job_id).serial, "job.dispatching")  # never claimed
    assert not printer_named(lab, "bench-offline").plate_clear  # and no plate given back
    lab.engine.dispose()


@pytest.mark.octoprint
def test_a_start_refused_by_a_busy_printer_does_not_give_the_plate_back(tmp_path, database_url):
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octo") as srv:
        d = tmp_path / "printers"
        write_printer(d, "octo", srv.url, key=srv.api_key, profiles=[PLA_250])
        lab, people = fleet_lab(tmp_path, database_url, d)
        job_id = cleared_job(lab, people, box(tmp_path))
        assert slicing.slice_job(lab, job_id)
        wait_for(
            lambda: polling.poll_printers(lab) and printer_named(lab, "octo").state == "idle",
            30,
            "idle",
        )
        printer_id = printer_named(lab, "octo").id
        dispatch.confirm_plate_clear(lab, people["tech"], printer_id)
        # Someone starts a print at the printer's own screen before pocprint polls again.
        own = write_gcode(tmp_path / "walk-up.gcode", LONG_MOVES, LONG_FEED)
        headers = {"X-Api-Key": srv.api_key}
        with own.open("rb") as fh:
            requests.post(
                f"{srv.url}/api/files/local",
                files={"file": (own.name, fh)},
                data={"print": "true"},
                headers=headers,
                timeout=10,
            ).raise_for_status()
        wait_for(
            lambda: (
                requests.get(f"{srv.url}/api/job", headers=headers, timeout=5).json()["state"]
                == "Printing"
            ),
            20,
            "the walk-up print",
        )
        assert dispatch.dispatch_ready_jobs(lab) == 0
        assert job(lab, job_id).state == JobState.READY
        assert not printer_named(lab, "octo").plate_clear  # the plate holds someone's print
        requests.post(f"{srv.url}/api/job", json={"command": "cancel"}, headers=headers, timeout=5)
        lab.engine.dispose()


@pytest.mark.octoprint
def test_a_print_pocprint_did_not_send_withdraws_the_plate_clear(tmp_path, database_url):
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octo") as srv:
        d = tmp_path / "printers"
        write_printer(d, "octo", srv.url, key=srv.api_key, profiles=[PLA_250])
        lab, people = fleet_lab(tmp_path, database_url, d)
        wait_for(
            lambda: polling.poll_printers(lab) and printer_named(lab, "octo").state == "idle",
            30,
            "idle",
        )
        dispatch.confirm_plate_clear(lab, people["tech"], printer_named(lab, "octo").id)
        own = write_gcode(tmp_path / "walk-up.gcode", LONG_MOVES, LONG_FEED)
        headers = {"X-Api-Key": srv.api_key}
        with own.open("rb") as fh:
            requests.post(
                f"{srv.url}/api/files/local",
                files={"file": (own.name, fh)},
                data={"print": "true"},
                headers=headers,
                timeout=10,
            ).raise_for_status()
        wait_for(
            lambda: polling.poll_printers(lab) and printer_named(lab, "octo").state == "printing",
            20,
            "pocprint to see the walk-up print",
        )
        assert not printer_named(lab, "octo").plate_clear
        withdrawn = events(lab, "octo", "printer.plate_clear_withdrawn")
        assert withdrawn and "walk-up.gcode" in withdrawn[-1].reason
        requests.post(f"{srv.url}/api/job", json={"command": "cancel"}, headers=headers, timeout=5)
        lab.engine.dispose()


# ------------------------------------------------------------ 3. the poller overwrites people


def _walk_up_print(srv, tmp_path) -> None:
    own = write_gcode(tmp_path / "walk-up.gcode", LONG_MOVES, LONG_FEED)
    headers = {"X-Api-Key": srv.api_key}
    with own.open("rb") as fh:
        requests.post(
            f"{srv.url}/api/files/local",
            files={"file": (own.name, fh)},
            data={"print": "true"},
            headers=headers,
            timeout=10,
        ).raise_for_status()


def _octo(srv, method: str, path: str, **kwargs):
    return requests.request(
        method, srv.url + path, headers={"X-Api-Key": srv.api_key}, timeout=10, **kwargs
    )


def _printing_job(tmp_path, database_url, srv, extents=(60, 60, 20)):
    d = tmp_path / "printers"
    write_printer(d, "octo", srv.url, key=srv.api_key, profiles=[PLA_250])
    lab, people = fleet_lab(tmp_path, database_url, d)
    job_id = cleared_job(lab, people, box(tmp_path, extents))
    assert slicing.slice_job(lab, job_id)
    wait_for(
        lambda: polling.poll_printers(lab) and printer_named(lab, "octo").state == "idle",
        30,
        "idle",
    )
    dispatch.confirm_plate_clear(lab, people["tech"], printer_named(lab, "octo").id)
    assert dispatch.dispatch_ready_jobs(lab) == 1
    return lab, people, job_id


@pytest.mark.octoprint
def test_the_poller_never_overwrites_a_technicians_resolution(tmp_path, database_url):
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octo") as srv:
        lab, people, job_id = _printing_job(tmp_path, database_url, srv)
        # At the printer: our print is stopped and someone else's started.
        _octo(srv, "POST", "/api/job", json={"command": "cancel"})
        wait_for(lambda: _octo(srv, "GET", "/api/job").json()["state"] == "Operational", 30, "op")
        _walk_up_print(srv, tmp_path)
        wait_for(lambda: _octo(srv, "GET", "/api/job").json()["state"] == "Printing", 30, "walk-up")
        polling.poll_printers(lab)
        assert job(lab, job_id).state == JobState.INTERRUPTED
        _octo(srv, "POST", "/api/job", json={"command": "cancel"})
        wait_for(lambda: _octo(srv, "GET", "/api/job").json()["state"] == "Operational", 30, "op")

        real_read = polling._read

        def technician_resolves_meanwhile(lab_, target):
            reading = real_read(lab_, target)  # idle, our file's last print failed
            jobs.resolve_interrupted(lab, people["tech"], job_id, "failed", "stopped at printer")
            return reading

        polling._read = technician_resolves_meanwhile
        try:
            polling.poll_printers(lab)
        finally:
            polling._read = real_read
        resolved = job(lab, job_id)
        assert resolved.state == JobState.FAILED
        actions = [e.action for e in events(lab, resolved.serial)]
        after = actions[actions.index("job.interruption_resolved") + 1 :]
        assert not {"job.failed", "job.printed", "job.cancelled", "job.interrupted"} & set(after)
        lab.engine.dispose()


# ------------------------------------------- 6. network calls inside write transactions


@pytest.mark.octoprint
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_pause_resume_and_cancel_reach_the_printer_outside_any_write_transaction(
    tmp_path, database_url
):
    """While pocprint waits for the printer's answer, other writers must get in (on SQLite a
    write transaction held across the HTTP call would lock the whole lab out)."""
    import sqlite3

    octoprint_or_skip()
    with running_octoprint(tmp_path / "octo") as srv:
        lab, people, job_id = _printing_job(tmp_path, database_url, srv)
        wait_for(
            lambda: polling.poll_printers(lab) and printer_named(lab, "octo").state == "printing",
            30,
            "printing",
        )
        connector = lab.connector("octo")
        db_file = database_url.removeprefix("sqlite:///")
        writable = []

        def another_writer_gets_in():
            conn = sqlite3.connect(db_file, timeout=0.3, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                writable.append(True)
            except sqlite3.OperationalError:
                writable.append(False)
            finally:
                conn.close()

        for name in ("pause", "resume", "cancel"):
            real = getattr(connector, name)

            def checked(real=real):
                another_writer_gets_in()
                return real()

            setattr(connector, name, checked)
        jobs.pause_job(lab, people["tech"], job_id, "check adhesion")
        wait_for(
            lambda: polling.poll_printers(lab) and printer_named(lab, "octo").state == "paused",
            30,
            "paused",
        )
        jobs.resume_job(lab, people["tech"], job_id, "fine")
        wait_for(
            lambda: polling.poll_printers(lab) and printer_named(lab, "octo").state == "printing",
            30,
            "printing",
        )
        jobs.cancel_job(lab, people["tech"], job_id, "end of test")
        assert writable == [True, True, True]
        assert job(lab, job_id).state == JobState.CANCELLED
        lab.engine.dispose()


# ------------------------------------------------------------------------- 7. clock skew


@pytest.mark.octoprint
def test_a_finished_print_is_recognised_whatever_the_printers_clock_says(tmp_path, database_url):
    """pocprint's clock runs an hour ahead of the printer's: the print must still be
    recognised as finished from the printer's own record, not by comparing clocks."""
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octo") as srv:
        lab, _people, job_id = _printing_job(tmp_path, database_url, srv, (20, 20, 4))
        with unit_of_work(lab.engine) as s:
            row = s.get(BuildJob, job_id)
            row.started_at = row.started_at + timedelta(hours=1)

        def ended():
            polling.poll_printers(lab)
            return job(lab, job_id).state not in (JobState.PRINTING, JobState.DISPATCHING)

        wait_for(ended, 120, "the print to end")
        assert job(lab, job_id).state == JobState.PRINTED
        lab.engine.dispose()
