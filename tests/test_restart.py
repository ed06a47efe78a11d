"""Restart safety: the service is killed (SIGKILL, as in a crash or power cut) while a job is
slicing, printing or being sent, and started again. The job resumes or is marked for a
technician; it is never lost and never sent to a printer twice."""

from __future__ import annotations

import time

import pytest
import requests
import trimesh
from sqlmodel import select

from pocprint.domain.states import JobState
from pocprint.services.lab import build_lab
from pocprint.services.sweeper import recover
from pocprint.store.db import read_session, unit_of_work, upgrade
from pocprint.store.models import AuditEvent, BuildJob, Printer

from conftest import make_settings, write_printer
from fleet_helpers import stock_printers
from octoprint_fixtures import octoprint_or_skip, running_octoprint
from service_process import Api, ServiceProcess, wait_for
from spine_helpers import E2E_MESH, make_people, order_and_approve

pytestmark = [pytest.mark.slicer]


def job_events(settings, serial: str) -> list[str]:
    lab = build_lab(settings)
    with read_session(lab.engine) as s:
        rows = s.exec(
            select(AuditEvent.action).where(AuditEvent.entity_id == serial).order_by(AuditEvent.id)
        ).all()
    lab.engine.dispose()
    return list(rows)


def setup_service(tmp_path, database_url, printer_url=None, key=None):
    printers_dir = tmp_path / "printers"
    url = printer_url or "http://127.0.0.1:9"
    write_printer(printers_dir, "bench-a", url, key=key or "unused")
    settings = make_settings(tmp_path, database_url, printers_dir)
    upgrade(settings.database_url)
    tokens = make_people(settings)
    stock_printers(settings)
    service = ServiceProcess(settings, tmp_path / "service.log")
    return settings, service, tokens


def test_killed_while_slicing_the_job_is_sliced_after_restart(tmp_path, database_url):
    # A part big enough that slicing takes a few seconds, so the kill lands inside it.
    big = tmp_path / "sphere.stl"
    trimesh.creation.icosphere(subdivisions=6, radius=45).export(big)
    settings, service, tokens = setup_service(tmp_path, database_url)
    service.start()
    try:
        tech, rad = Api(service.url, tokens["tech"]), Api(service.url, tokens["rad"])
        job_id, serial = order_and_approve(tech, rad, big)
        wait_for(
            lambda: tech.get(f"/jobs/{job_id}").json()["state"],
            lambda s: s == "slicing",
            60,
            "slicing",
            0.05,
        )
        service.kill()
        lab = build_lab(settings)
        with read_session(lab.engine) as s:
            assert s.get(BuildJob, job_id).state == JobState.SLICING  # cut off mid-step
        lab.engine.dispose()

        service.start()
        job = wait_for(
            lambda: tech.get(f"/jobs/{job_id}").json(),
            lambda j: j["state"] == "ready",
            120,
            "re-slice",
        )
        assert job["gcode_sha256"] and job["estimated_time_s"] > 0
        actions = job_events(settings, serial)
        assert "job.lease_expired" in actions
        assert actions.count("job.sliced") == 1
    except BaseException:
        print(service.log_tail(60))
        raise
    finally:
        service.stop()


@pytest.mark.octoprint
def test_killed_while_printing_the_same_print_is_followed_and_never_resent(tmp_path, database_url):
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octoprint") as printer:
        settings, service, tokens = setup_service(
            tmp_path, database_url, printer.url, printer.api_key
        )
        service.start()
        try:
            tech, rad = Api(service.url, tokens["tech"]), Api(service.url, tokens["rad"])
            job_id, serial = order_and_approve(tech, rad, E2E_MESH)
            wait_for(
                lambda: tech.get(f"/jobs/{job_id}").json()["state"],
                lambda s: s == "ready",
                120,
                "slicing",
            )
            printer_id = wait_for(
                lambda: tech.get("/printers").json(),
                lambda ps: ps[0]["state"] == "idle",
                30,
                "idle",
            )[0]["id"]
            assert tech.post(f"/printers/{printer_id}/plate-clear").status_code == 204
            wait_for(
                lambda: tech.get(f"/jobs/{job_id}").json()["state"],
                lambda s: s == "printing",
                30,
                "printing",
                0.1,
            )
            service.kill()
            time.sleep(2)  # the printer goes on printing while pocprint is down
            service.start()
            job = wait_for(
                lambda: tech.get(f"/jobs/{job_id}").json(),
                lambda j: j["state"] not in ("printing", "dispatching"),
                300,
                "print end",
            )
            assert job["state"] == "printed", job
            info = requests.get(
                f"{printer.url}/api/files/local/{serial}.gcode",
                headers={"X-Api-Key": printer.api_key},
                timeout=10,
            ).json()
            assert info["prints"]["success"] == 1 and info["prints"]["failure"] == 0
            actions = job_events(settings, serial)
            assert actions.count("job.dispatching") == 1 and actions.count("job.started") == 1
        except BaseException:
            print(service.log_tail(60))
            raise
        finally:
            service.stop()


@pytest.mark.octoprint
def test_dispatch_cut_off_before_anything_was_sent_waits_again_never_sent(tmp_path, database_url):
    """A crash between "claimed for a printer" and the upload: the job waits again."""
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octoprint") as printer:
        settings, service, tokens = setup_service(
            tmp_path, database_url, printer.url, printer.api_key
        )
        service.start()
        try:
            tech, rad = Api(service.url, tokens["tech"]), Api(service.url, tokens["rad"])
            job_id, serial = order_and_approve(tech, rad, E2E_MESH)
            wait_for(
                lambda: tech.get(f"/jobs/{job_id}").json()["state"],
                lambda s: s == "ready",
                120,
                "slicing",
            )
        finally:
            service.stop()
        lab = build_lab(settings)
        with unit_of_work(lab.engine) as s:  # the state a crash mid-dispatch leaves behind
            job = s.get(BuildJob, job_id)
            job.state = JobState.DISPATCHING
            job.printer_id = 1
            job.remote_name = f"{serial}.gcode"
        counts = recover(lab)
        # The printer is idle and does not hold the file: nothing was sent, so the job waits
        # in the queue again (the fault suite covers a file that did reach the printer).
        assert counts["dispatch_requeued"] == 1
        with read_session(lab.engine) as s:
            job = s.get(BuildJob, job_id)
            printer_row = s.get(Printer, 1)
        assert job.state == JobState.READY and job.printer_id is None
        assert not printer_row.plate_clear  # no plate was confirmed, none is given
        lab.engine.dispose()
        service.start()
        try:
            time.sleep(3)  # several dispatch and poll passes
            assert tech.get(f"/jobs/{job_id}").json()["state"] == "ready"
            files = requests.get(
                f"{printer.url}/api/files?recursive=true",
                headers={"X-Api-Key": printer.api_key},
                timeout=10,
            ).json()["files"]
            assert files == []  # nothing was sent, and nothing is sent without a plate clear
        finally:
            service.stop()
