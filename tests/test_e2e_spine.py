"""End to end on real parts: pocprint as a process, a real OctoPrint with its virtual printer,
the real PrusaSlicer, a real database. One order goes from upload to a printed, accepted
device whose record matches what the printer itself reports."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest
import requests

from pocprint.slicing.prusaslicer import slicer_binary
from pocprint.store.db import upgrade

from conftest import PASSWORD, make_settings, order_json, write_printer
from fleet_helpers import stock_printers
from octoprint_fixtures import octoprint_or_skip, running_octoprint
from service_process import Api, ServiceProcess, wait_for
from spine_helpers import E2E_MESH, make_people, review_and_approve_case

pytestmark = [pytest.mark.octoprint, pytest.mark.slicer]


@pytest.fixture
def printer(tmp_path):
    octoprint_or_skip()
    slicer_binary()
    with running_octoprint(tmp_path / "octoprint") as server:
        yield server


def test_order_to_printed_device_matches_printer(tmp_path, database_url, printer):
    printers_dir = tmp_path / "printers"
    write_printer(printers_dir, "bench-a", printer.url, key=printer.api_key)
    settings = make_settings(tmp_path, database_url, printers_dir)
    upgrade(settings.database_url)
    tokens = make_people(settings)
    stock_printers(settings)  # a printer takes a job only with an in-date lot loaded
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        tech, rad = Api(service.url, tokens["tech"]), Api(service.url, tokens["rad"])
        mesh_bytes = E2E_MESH.read_bytes()

        r = tech.post(
            "/cases",
            json=order_json(
                patient_code="PX-1042", indication="Abdominal aortic aneurysm, endograft planning"
            ),
        )
        assert r.status_code == 201, r.text
        case = r.json()
        assert case["code"].startswith("C")
        review_and_approve_case(rad, case["id"])  # the clinical gate's first signature

        # The client's file name carries patient identity; pocprint must not keep it.
        r = tech.post(
            f"/cases/{case['id']}/parts",
            files={"mesh": ("Doe_Jane_aorta.stl", mesh_bytes, "model/stl")},
        )
        assert r.status_code == 201, r.text
        part = r.json()
        assert part["source_sha256"] == hashlib.sha256(mesh_bytes).hexdigest()

        part = wait_for(
            lambda: tech.get(f"/parts/{part['id']}").json(),
            lambda p: p["state"] in ("processed", "rejected"),
            120,
            "analysis and repair",
        )
        assert part["state"] == "processed", part
        assert part["verdict"] == "repaired", part["repair_report"]
        assert part["analysis_before"]["volume_mm3"] < 0  # the corpus file is inside out
        assert part["analysis_after"]["watertight"] is True
        assert part["analysis_after"]["volume_mm3"] > 0

        r = rad.post(f"/parts/{part['id']}/segmentation", json={"password": PASSWORD})
        assert r.status_code == 201, r.text
        # A technician cannot approve; the radiologist signs with the password again.
        assert (
            tech.post(f"/parts/{part['id']}/approval", json={"password": PASSWORD}).status_code
            == 403
        )
        assert (
            rad.post(f"/parts/{part['id']}/approval", json={"password": "wrong"}).status_code == 401
        )
        r = rad.post(f"/parts/{part['id']}/approval", json={"password": PASSWORD, "comment": "ok"})
        assert r.status_code == 201, r.text
        job_id, serial = r.json()["job_id"], r.json()["serial"]

        job = wait_for(
            lambda: tech.get(f"/jobs/{job_id}").json(),
            lambda j: j["state"] in ("ready", "slice_failed"),
            180,
            "slicing",
        )
        assert job["state"] == "ready", job
        assert job["slicer_version"].startswith("2.")
        assert job["estimated_time_s"] > 0 and job["filament_g"] > 0
        queue = tech.get("/queue").json()
        assert [q["serial"] for q in queue] == [serial]

        printers = wait_for(
            lambda: tech.get("/printers").json(),
            lambda ps: ps and ps[0]["state"] == "idle",
            30,
            "printer idle",
        )
        printer_id = printers[0]["id"]
        # No plate-clear yet: the job must stay in the queue through several dispatch passes.
        for _ in range(8):
            assert tech.get(f"/jobs/{job_id}").json()["state"] == "ready"
            time.sleep(0.25)
        assert rad.post(f"/printers/{printer_id}/plate-clear").status_code == 403
        assert tech.post(f"/printers/{printer_id}/plate-clear").status_code == 204

        wait_for(
            lambda: tech.get(f"/jobs/{job_id}").json()["state"],
            lambda s: s in ("printing", "printed"),
            30,
            "print start",
        )
        job = wait_for(
            lambda: tech.get(f"/jobs/{job_id}").json(),
            lambda j: j["state"] not in ("printing", "dispatching"),
            300,
            "print end",
        )
        assert job["state"] == "printed", job
        r = tech.post(f"/jobs/{job_id}/outcome", json={"outcome": "accepted", "note": ""})
        assert r.status_code == 204, r.text

        record = tech.get(f"/devices/{serial}").json()
        files = record["files"]
        assert files["source"]["sha256"] == hashlib.sha256(mesh_bytes).hexdigest()
        assert len(files["repaired_mesh"]["sha256"]) == 64
        assert files["repaired_mesh"]["sha256"] != files["source"]["sha256"]
        assert record["design_approval"]["content_sha256"] == files["repaired_mesh"]["sha256"]
        assert record["device"]["state"] == "completed"
        assert record["device"]["outcome"] == "accepted"
        assert record["printer"]["serial"] == "SN-bench-a"
        assert (
            record["slicing"]["profile_sha256"]
            == hashlib.sha256(
                (settings.profiles_dir / "generic-fff-250x210_pla.ini").read_bytes()
            ).hexdigest()
        )
        actions = [e["action"] for e in record["events"]]
        for expected in (
            "case.created",
            "part.uploaded",
            "part.repaired",
            "design.approved",
            "job.sliced",
            "job.dispatching",
            "job.started",
            "job.printed",
            "job.outcome",
        ):
            assert expected in actions, actions
        assert actions.count("job.started") == 1

        # What the printer itself holds and reports must match the record.
        octo = requests.Session()
        octo.headers["X-Api-Key"] = printer.api_key
        remote = record["print"]["remote_file"]
        assert remote == f"{serial}.gcode" and "PX-1042" not in remote
        info = octo.get(f"{printer.url}/api/files/local/{remote}", timeout=10).json()
        assert info["hash"] == files["gcode"]["sha1"] == record["print"]["printer_sha1"]
        assert info["prints"]["success"] == 1 and info["prints"]["failure"] == 0
        assert info["prints"]["last"]["success"] is True
        gcode = octo.get(f"{printer.url}/downloads/files/local/{remote}", timeout=30).content
        assert hashlib.sha256(gcode).hexdigest() == files["gcode"]["sha256"]
        assert b"PX-1042" not in gcode and b"Doe" not in gcode

        # The device page a technician opens on the tablet (signed in with a password).
        browser = requests.Session()
        login_page = browser.get(f"{service.url}/login", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
        r = browser.post(
            f"{service.url}/login",
            data={"username": "tech", "password": PASSWORD, "csrf_token": csrf},
            timeout=10,
        )
        assert r.status_code == 200 and "Fleet board" in r.text
        page = browser.get(f"{service.url}/devices/{serial}", timeout=10).text
        for digest in (
            files["source"]["sha256"],
            files["repaired_mesh"]["sha256"],
            files["gcode"]["sha256"],
        ):
            assert digest in page
        # Not released yet: no label (and no QR code) is offered, and the page says why.
        assert "<svg" not in page and "Labels are printed once the device is released" in page
        assert "Rad Tester" in page and "SN-bench-a" in page
        download = browser.get(f"{service.url}/devices/{serial}.json", timeout=10)
        assert "attachment" in download.headers["Content-Disposition"]
        assert download.json()["files"] == files
        assert download.json()["events"] == record["events"]
        # The file name the client sent never reached storage.
        if database_url.startswith("sqlite:///"):
            assert b"Doe_Jane" not in Path(database_url.removeprefix("sqlite:///")).read_bytes()
    except BaseException:
        print(service.log_tail(80))
        raise
    finally:
        service.stop()
