"""The fleet board and the printer/job API over HTTP on a real database: tiles with alerts,
the urgent override and pause with reasons through forms (role and CSRF checked on the
server), the manual printer's download and confirmations, and live updates in a real
browser without reloading the page."""

from __future__ import annotations

import hashlib
import re
import shutil
from datetime import date, timedelta

import pytest
import requests

from pocprint.domain.states import JobState
from pocprint.services import dispatch
from pocprint.services.slicing import slice_job
from pocprint.services.tokens import create_api_token
from pocprint.store.db import upgrade
from pocprint.web import create_app

from conftest import PASSWORD, make_settings, write_printer
from fleet_helpers import PLA_180, box, cleared_job, fleet_lab, job, printer_named
from service_process import ServiceProcess, wait_for
from spine_helpers import CHROMIUM, TABLET, launch_chromium, make_people

pytestmark = [pytest.mark.slicer]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def signed_in(app, username: str):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    r = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page)}
    )
    assert r.status_code in (302, 303), r.status_code
    return client


def post_form(client, path: str, **data):
    token = csrf_of(client.get("/board/").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token, **data})


@pytest.fixture
def manual_board(tmp_path, database_url):
    d = tmp_path / "printers"
    write_printer(
        d,
        "manual-1",
        None,
        connector="manual",
        api_key_file=None,
        profiles=[PLA_180],
        build_volume_mm=[180, 180, 180],
        calibration_due=(date.today() + timedelta(days=3)).isoformat(),
    )
    lab, people = fleet_lab(tmp_path, database_url, d)
    yield lab, people, create_app(lab.settings, lab)
    lab.engine.dispose()


def test_board_tiles_urgent_override_and_manual_printing_over_http(manual_board, tmp_path):
    lab, people, app = manual_board
    job_id = cleared_job(lab, people, box(tmp_path))
    assert slice_job(lab, job_id)
    serial = job(lab, job_id).serial
    tech, rad = signed_in(app, "tech"), signed_in(app, "rad")

    live = tech.get("/board/live").get_data(as_text=True)
    assert 'data-printer="manual-1"' in live and "<strong>manual</strong>" in live
    assert "Material: <strong>PLA</strong>" in live
    due = (date.today() + timedelta(days=3)).isoformat()
    assert f"Calibration due on {due}" in live
    assert serial in live and "Urgent…" in live

    # Urgent override: the role is checked on the server, the form needs CSRF and a reason.
    assert post_form(rad, f"/board/jobs/{job_id}/urgent", urgent="1", reason="x").status_code == 403
    r = tech.post(f"/board/jobs/{job_id}/urgent", data={"urgent": "1", "reason": "no token"})
    assert r.status_code in (302, 303, 400) and not job(lab, job_id).urgent
    post_form(tech, f"/board/jobs/{job_id}/urgent", urgent="1", reason="")
    assert not job(lab, job_id).urgent
    post_form(tech, f"/board/jobs/{job_id}/urgent", urgent="1", reason="surgery tomorrow 8:00")
    assert job(lab, job_id).urgent
    assert 'class="badge urgent" title="surgery tomorrow 8:00"' in tech.get("/board/live").get_data(
        as_text=True
    )

    # Plate clear on the tablet; dispatch reserves the manual printer for the job.
    printer_id = printer_named(lab, "manual-1").id
    post_form(tech, f"/board/printers/{printer_id}/plate-clear")
    dispatch.dispatch_ready_jobs(lab)
    live = tech.get("/board/live").get_data(as_text=True)
    assert "Download G-code" in live and "Print started" in live

    # The download is recorded, so it is a POST: a GET (prefetch, link preview) changes nothing.
    assert tech.get(f"/board/jobs/{job_id}/gcode").status_code == 405
    assert not [c for c in job(lab, job_id).controls or [] if c["action"] == "download"]
    assert post_form(rad, f"/board/jobs/{job_id}/gcode").status_code == 403
    download = post_form(tech, f"/board/jobs/{job_id}/gcode")
    assert download.status_code == 200
    assert f"filename={serial}.gcode" in download.headers["Content-Disposition"]
    assert hashlib.sha256(download.data).hexdigest() == job(lab, job_id).gcode_sha256
    # Without the technician's confirmation that this file was started, nothing is recorded.
    post_form(tech, f"/board/jobs/{job_id}/manual-start")
    assert job(lab, job_id).state == JobState.DISPATCHING
    post_form(tech, f"/board/jobs/{job_id}/manual-start", confirm_file="yes")
    started = job(lab, job_id)
    assert started.state == JobState.PRINTING and started.printer_sha1 is None
    assert started.printer_report["verification"]["evidence"] == "technician_confirmed_download"

    post_form(tech, f"/board/jobs/{job_id}/pause", reason="nozzle check")
    assert printer_named(lab, "manual-1").state == "paused"
    live = tech.get("/board/live").get_data(as_text=True)
    assert "Resume…" in live and "Print finished" in live

    # The same through the JSON API with a bearer token.
    token = create_api_token(lab, "tech", "tests")
    api = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    printers = api.get("/api/v1/printers", headers=headers).get_json()
    assert printers[0]["manual"] is True and printers[0]["state"] == "paused"
    assert any("Calibration due" in a for a in printers[0]["alerts"])
    r = api.post(f"/api/v1/jobs/{job_id}/resume", json={"reason": ""}, headers=headers)
    assert r.status_code == 422
    r = api.post(f"/api/v1/jobs/{job_id}/resume", json={"reason": "nozzle fine"}, headers=headers)
    assert r.status_code == 204
    r = api.post(f"/api/v1/jobs/{job_id}/manual-end", json={"result": "printed"}, headers=headers)
    assert r.status_code == 204
    slices = api.get(f"/api/v1/jobs/{job_id}/slices", headers=headers).get_json()
    assert [x["profile_id"] for x in slices] == [PLA_180]
    assert slices[0]["gcode_sha256"] == job(lab, job_id).gcode_sha256
    assert slices[0]["filament_g"] > 0 and slices[0]["placement"]["orientation"] == "stable"
    done = api.get(f"/api/v1/jobs/{job_id}", headers=headers).get_json()
    assert done["state"] == "printed" and done["urgent"] and done["material"] == "PLA"
    assert [c["action"] for c in done["controls"]] == [
        "urgent",
        "download",
        "start",
        "pause",
        "resume",
        "end_printed",
    ]


@pytest.mark.browser
def test_board_updates_live_without_reloading(tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    d = tmp_path / "printers"
    write_printer(d, "manual-1", None, connector="manual", api_key_file=None, profiles=[PLA_180])
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'pocprint.db'}", d)
    upgrade(settings.database_url)
    tokens = make_people(settings)
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        with playwright_api.sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_context(viewport=TABLET).new_page()
            refreshes, csp_errors = [], []
            page.on(
                "request",
                lambda r: (
                    refreshes.append(r.headers.get("x-pocprint-background"))
                    if r.url.endswith("/board/live")
                    else None
                ),
            )
            page.on(
                "console",
                lambda m: (
                    csp_errors.append(m.text) if "Content Security Policy" in m.text else None
                ),
            )
            page.goto(f"{service.url}/login")
            page.fill("input[name=username]", "tech")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{service.url}/board/")
            tile = page.locator('[data-printer="manual-1"]')
            assert "Plate clear" in tile.inner_text()
            page.evaluate("window.__notReloaded = true")

            # Someone else confirms the plate (here: through the API); the tile follows.
            printers = requests.get(
                f"{service.url}/api/v1/printers",
                headers={"Authorization": f"Bearer {tokens['tech']}"},
                timeout=10,
            ).json()
            r = requests.post(
                f"{service.url}/api/v1/printers/{printers[0]['id']}/plate-clear",
                headers={"Authorization": f"Bearer {tokens['tech']}"},
                timeout=10,
            )
            assert r.status_code == 204, r.text
            wait_for(
                lambda: tile.inner_text(),
                lambda text: "Plate confirmed clear" in text,
                15,
                "the tile to update",
            )
            assert page.evaluate("window.__notReloaded") is True
            # The browser marks every refresh as background (it never extends the session),
            # and the page's CSP blocks nothing the board needs.
            assert refreshes and set(refreshes) == {"1"}, refreshes
            assert csp_errors == []
            browser.close()
    except BaseException:
        print(service.log_tail(60))
        raise
    finally:
        service.stop()


def test_queue_predicts_finish_over_the_fleet_and_marks_jobs_at_risk(manual_board, tmp_path):
    from pocprint.reads import board as board_reads
    from pocprint.services import jobs
    from pocprint.store.db import read_session

    lab, people, _app = manual_board
    today = cleared_job(lab, people, box(tmp_path, (20, 20, 5)), days=0, patient_code="PX-0001")
    later = cleared_job(lab, people, box(tmp_path, (20, 20, 6)), days=5, patient_code="PX-0002")
    for job_id in (today, later):
        assert slice_job(lab, job_id)
    with read_session(lab.engine) as s:
        rows = board_reads.queue(s, lab=lab)
    assert [r["id"] for r in rows] == [today, later]
    first, second = rows
    assert first["at_risk"] and not second["at_risk"]  # needed today: already late
    # One printer: the second job starts when the first should end.
    estimate = timedelta(seconds=second["estimated_time_s"])
    assert second["predicted_finish"] - first["predicted_finish"] == estimate
    assert first["profiles"] == [PLA_180] and first["device_type"] == "anatomical_model"

    jobs.set_urgent(lab, people["tech"], later, True, "theatre slot moved")
    with read_session(lab.engine) as s:
        rows = board_reads.queue(s, lab=lab)
    assert [r["id"] for r in rows] == [later, today] and rows[0]["urgent"]


def test_an_interrupted_job_is_resolved_on_its_tile_with_a_reprint(manual_board, tmp_path):
    from pocprint.store.db import unit_of_work
    from pocprint.store.models import BuildJob

    lab, people, app = manual_board
    job_id = cleared_job(lab, people, box(tmp_path))
    assert slice_job(lab, job_id)
    tech = signed_in(app, "tech")
    post_form(tech, f"/board/printers/{printer_named(lab, 'manual-1').id}/plate-clear")
    dispatch.dispatch_ready_jobs(lab)
    with unit_of_work(lab.engine) as s:  # what a lost printer leaves behind
        s.get(BuildJob, job_id).state = JobState.INTERRUPTED
    live = tech.get("/board/live").get_data(as_text=True)
    assert "Resolve the interruption…" in live and "Failed: print it again" in live
    r = post_form(tech, f"/board/jobs/{job_id}/resolve", resolution="reprint", reason="")
    assert job(lab, job_id).state == JobState.INTERRUPTED  # a reason is required
    r = post_form(
        tech, f"/board/jobs/{job_id}/resolve", resolution="reprint", reason="spaghetti at 40 %"
    )
    assert r.status_code == 303
    assert job(lab, job_id).state == JobState.FAILED
    page = tech.get("/board/").get_data(as_text=True)
    assert "A new build job is queued." in page
    reprint = job(lab, job_id + 1)
    assert (
        reprint.state == JobState.SLICE_QUEUED
        and reprint.mesh_sha256 == job(lab, job_id).mesh_sha256
    )
