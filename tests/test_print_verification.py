"""What verified a print, said truthfully in the record, its PDF, the device page and the
release (issue 14): a manual printer's build is verified by the technician's confirmation of a
hash-checked download, never by a "printer's SHA-1" that pocprint computed itself."""

from __future__ import annotations

import re

import pytest

from pocprint.reads.records import device_record
from pocprint.services import release
from pocprint.services.errors import WrongState
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob
from pocprint.trace.pdf import dhr_pdf
from pocprint.trace.site import Site
from pocprint.web import create_app

from conftest import PASSWORD
from pdf_layout import page_texts
from trace_helpers import printed_device


def _as_manual_build(lab, job_id: int) -> str:
    """The job as confirm_start leaves a manual printer's build (no printer hash)."""
    with unit_of_work(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        job.printer_sha1 = None
        job.printer_report = {
            "verification": {
                "evidence": "technician_confirmed_download",
                "gcode_sha256": job.gcode_sha256,
                "downloaded_by": "tech",
                "confirmed_by": "tech",
                "confirmed_at": "2026-12-07T10:00:00+00:00",
            }
        }
        return job.serial


def _record(lab, serial):
    with read_session(lab.engine) as s:
        return device_record(s, serial)


def test_a_manual_build_is_labelled_by_the_technicians_confirmation(lab, people, tmp_path):
    job_id = printed_device(lab, people, tmp_path)
    serial = _as_manual_build(lab, job_id)
    record = _record(lab, serial)
    proof = record["print"]["verification"]
    assert proof["evidence"] == "technician_confirmed_download"
    assert proof["value"] == record["files"]["gcode"]["sha256"]
    text = " ".join(" ".join(page_texts(dhr_pdf(record, Site(name="Lab")))).split())
    assert "Print verified by" in text and "technician confirmed" in text
    assert "Printer's own SHA-1" not in text and "SHA-1 (printer)" not in text
    app = create_app(lab.settings, lab)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"username": "tech", "password": PASSWORD, "csrf_token": csrf})
    html = client.get(f"/devices/{serial}").get_data(as_text=True)
    assert "technician confirmed printing the G-code downloaded from pocprint" in html
    assert "Printer&#39;s own SHA-1" not in html and "Printer's own SHA-1" not in html


def test_an_octoprint_build_keeps_the_printers_sha1(lab, people, tmp_path):
    job_id = printed_device(lab, people, tmp_path)  # printer_sha1 as OctoPrint reports it
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
    record = _record(lab, job.serial)
    assert record["print"]["verification"]["evidence"] == "printer_sha1"
    assert record["print"]["verification"]["value"] == job.printer_sha1
    text = " ".join(" ".join(page_texts(dhr_pdf(record, Site(name="Lab")))).split())
    assert "Printer's own SHA-1" in text
    # The release binds the printer's hash, as releases signed before did.
    with read_session(lab.engine) as s:
        content = release.release_content(s, s.get(BuildJob, job_id))
    assert content["printer_sha1"] == job.printer_sha1 and "print_verified_by" not in content


def test_the_release_of_a_manual_build_binds_what_verified_it(lab, people, tmp_path):
    job_id = printed_device(lab, people, tmp_path)
    _as_manual_build(lab, job_id)
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        content = release.release_content(s, job)
    assert content["printer_sha1"] is None
    assert content["print_verified_by"] == ["technician_confirmed_download", job.gcode_sha256]
    with unit_of_work(lab.engine) as s:  # nothing verified it: no release
        s.get(BuildJob, job_id).printer_report = {}
    with pytest.raises(WrongState, match="no verified print"):
        release.release_device(lab, people["manager"], job_id, PASSWORD)
