"""PACS on a real Orthanc (Debian `orthanc`, started by the test with its own JSON config on
free loopback ports) loaded with a small synthetic CT study made with pydicom: the order form
looks the study up by accession number (C-FIND); on release the approved mesh is stored into
the same study as an Encapsulated STL instance (C-STORE) by the outbox, and read back from
Orthanc over REST with its SHA-256 checked."""

from __future__ import annotations

import dataclasses
import hashlib
import html as html_text
import io
import logging
import re
import time

import pydicom
import pytest
from sqlmodel import select
from test_web import csrf_of, login

from pocprint.demo.octoprint_server import free_port
from pocprint.hospital.errors import ConfigError
from pocprint.hospital.links import hospital_links
from pocprint.scheduler import deliver_outbox
from pocprint.services import outbox, pacs, postprocessing, release
from pocprint.services.cases import read_identifiers
from pocprint.services.catalog import load_shipped
from pocprint.services.errors import Forbidden
from pocprint.services.fleet import sync_printers
from pocprint.services.lab import build_lab
from pocprint.store.db import read_session, unit_of_work, upgrade
from pocprint.store.models import AuditEvent, BuildJob, Case, OutboxMessage
from pocprint.web import create_app

from conftest import PASSWORD, make_settings, order_form
from peer_servers import OrthancServer, make_ct_study
from trace_helpers import lab_manager, printed_device

ENCAPSULATED_STL = "1.2.840.10008.5.1.4.1.1.104.3"


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = OrthancServer(tmp_path_factory.mktemp("orthanc")).start()
    study = make_ct_study(tmp_path_factory.mktemp("ct"))
    for path in study.files:
        server.upload(path)
    server.study = study
    yield server
    server.stop()


def pacs_section(orthanc: OrthancServer, port: int | None = None) -> dict:
    return {
        "host": "127.0.0.1",
        "port": port or orthanc.dicom_port,
        "called_ae": orthanc.aet,
        "calling_ae": orthanc.client_aet,
        "timeout_s": 5,
    }


def _lab(tmp_path, database_url, printers_dir, section, **overrides):
    settings = make_settings(
        tmp_path,
        database_url,
        printers_dir,
        pacs=section,
        outbox_retry_base_s=0.0,
        outbox_max_attempts=2,
        **overrides,
    )
    upgrade(settings.database_url)
    lab = build_lab(settings)
    sync_printers(lab)
    load_shipped(lab)
    return lab


@pytest.fixture
def plab(tmp_path, database_url, printers_dir, orthanc):
    lab = _lab(tmp_path, database_url, printers_dir, pacs_section(orthanc))
    yield lab
    lab.engine.dispose()


@pytest.fixture
def client(plab, people):
    app = create_app(plab.settings, plab)
    client = app.test_client()
    assert login(client, "tech").status_code == 302
    return client


def _new_case_form(client, **fields):
    page = client.get("/cases/new").get_data(as_text=True)
    return {**order_form(patient_code="PX-7001"), "csrf_token": csrf_of(page), **fields}


def _hidden(html: str) -> dict:
    return {
        m.group(1): html_text.unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', html)
    }


def test_order_form_fills_imaging_from_pacs_and_keeps_identity_encrypted(
    client, plab, people, orthanc, caplog
):
    study = orthanc.study
    caplog.set_level(logging.DEBUG)
    form = _new_case_form(
        client, accession_number=study.accession, modality="", slice_thickness_mm=""
    )
    looked = client.post("/cases/new", data={**form, "action": "lookup"})
    html = looked.get_data(as_text=True)
    assert looked.status_code == 200, html
    assert f"From PACS TESTPACS at 127.0.0.1:{orthanc.dicom_port}, looked up" in html
    assert 'name="slice_thickness_mm" inputmode="decimal" value="1.0"' in html  # thinnest series
    assert "<option selected>CT</option>" in html
    assert "ABDOMEN" in html and "Arterial 1 mm" in html and "Scout 3 mm" in html
    # The identity from the PACS goes only into the identifiers fields (this site keeps them).
    assert 'name="identifier_record_number" autocomplete="off" value="MRN-99887766"' in html
    assert 'name="identifier_name" autocomplete="off" value="Erika Testpatient"' in html
    hidden = _hidden(html)
    assert hidden["study_instance_uid"] == study.study_uid
    # Save the order as the form now stands (the technician picks the 1 mm series).
    saved = client.post(
        "/cases/new",
        data={
            **form,
            **hidden,
            "source_series_uid": study.thin_series_uid,
            "modality": "CT",
            "slice_thickness_mm": "1.0",
            "identifier_name": "Erika Testpatient",
            "identifier_record_number": "MRN-99887766",
            "identifier_birth_date": "1960-01-01",
        },
    )
    assert saved.status_code == 303, saved.get_data(as_text=True)
    with read_session(plab.engine) as s:
        case = s.exec(select(Case)).one()
        events = s.exec(select(AuditEvent)).all()
    assert case.study_instance_uid == study.study_uid
    assert case.source_series_uid == study.thin_series_uid
    assert case.body_part == "ABDOMEN" and case.modality == "CT"
    assert case.study_date is not None
    assert case.imaging_source.startswith("PACS TESTPACS")
    assert [s["description"] for s in case.imaging_series] == ["Scout 3 mm", "Arterial 1 mm"]
    assert case.patient_code == "PX-7001"
    assert "Testpatient" not in (case.patient_identifiers or "")  # encrypted
    identifiers = read_identifiers(plab, people["rad"], case.id)
    assert identifiers == {
        "name": "Erika Testpatient",
        "record_number": "MRN-99887766",
        "birth_date": "1960-01-01",
        "accession_number": "ACC-2026-0001",  # identifying too: kept encrypted with them
    }
    assert case.accession_number is None or "ACC-2026-0001" not in case.accession_number
    for event in events:
        text = f"{event.before} {event.after} {event.reason}"
        assert "Testpatient" not in text and "99887766" not in text, event.action
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "Testpatient" not in logged and "99887766" not in logged
    detail = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "From PACS TESTPACS" in detail and "segmented" in detail


def test_without_an_identifiers_key_the_pacs_identity_is_not_offered(
    tmp_path, database_url, printers_dir, orthanc, people
):
    lab = _lab(
        tmp_path / "nokey", database_url, printers_dir, pacs_section(orthanc), identifiers_key=None
    )
    try:
        found = pacs.lookup_study(lab, people["tech"], accession=orthanc.study.accession)
        assert found.identifiers is None
        assert found.fields["modality"] == "CT"
        client = create_app(lab.settings, lab).test_client()  # same database: same people
        assert login(client, "tech").status_code == 302
        html = client.post(
            "/cases/new",
            data={
                **_new_case_form(client, accession_number=orthanc.study.accession),
                "action": "lookup",
            },
        ).get_data(as_text=True)
        assert "ABDOMEN" in html
        assert "99887766" not in html and "Testpatient" not in html
    finally:
        lab.engine.dispose()


def test_lookup_failures_are_clear_and_a_hand_typed_order_still_goes_through(
    tmp_path, database_url, printers_dir, orthanc, people
):
    down = _lab(tmp_path / "down", database_url, printers_dir, pacs_section(orthanc, free_port()))
    try:
        client = create_app(down.settings, down).test_client()
        assert login(client, "tech").status_code == 302
        form = _new_case_form(client, accession_number="ACC-2026-0001", indication="Typed by hand")
        failed = client.post("/cases/new", data={**form, "action": "lookup"})
        html = failed.get_data(as_text=True)
        assert failed.status_code == 422
        assert "does not answer" in html and "typed by hand" in html
        assert "Typed by hand" in html  # what was typed is kept
        saved = client.post("/cases/new", data=form)
        assert saved.status_code == 303
        with read_session(down.engine) as s:
            case = s.exec(select(Case)).one()
        assert case.study_instance_uid is None and case.imaging_source is None
    finally:
        down.engine.dispose()
    # A study the PACS does not have, and a lookup the PACS cannot be asked.
    with pytest.raises(pacs.PacsUnavailable, match="no study with accession number NOPE-1"):
        lab = _lab(tmp_path / "up", database_url, printers_dir, pacs_section(orthanc))
        try:
            pacs.lookup_study(lab, people["tech"], accession="NOPE-1")
        finally:
            lab.engine.dispose()
    with pytest.raises(pacs.PacsUnavailable, match="no wildcards"):
        lab = _lab(tmp_path / "up2", database_url, printers_dir, pacs_section(orthanc))
        try:
            pacs.lookup_study(lab, people["tech"], accession="ACC*")
        finally:
            lab.engine.dispose()


def _release_with_study(plab, people, tmp_path, orthanc) -> int:
    found = pacs.lookup_study(plab, people["tech"], accession=orthanc.study.accession)
    imaging = {**found.imaging, "source_series_uid": orthanc.study.thin_series_uid}
    job_id = printed_device(plab, people, tmp_path, device_type="anatomical_model", imaging=imaging)
    tech = people["tech"]
    postprocessing.record_step(plab, tech, job_id, "support_removal", {"method": "manual"})
    postprocessing.record_step(plab, tech, job_id, "visual_check", {"finding": "no defects"})
    postprocessing.record_measurement(
        plab,
        tech,
        job_id,
        feature="aortic neck",
        designed_mm=22.0,
        measured_mm=21.9,
        tolerance_mm=1.0,
    )
    return job_id


def _find_instance(orthanc: OrthancServer, sop_instance_uid: str) -> bytes:
    import requests

    found = requests.post(
        orthanc.url + "/tools/find",
        json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}},
        timeout=30,
    ).json()
    assert len(found) == 1, found
    return orthanc.get(f"/instances/{found[0]}/file").content


def test_release_archives_the_mesh_into_the_study_as_encapsulated_stl(
    plab, people, tmp_path, orthanc
):
    manager = lab_manager(plab, people)
    job_id = _release_with_study(plab, people, tmp_path, orthanc)
    release.release_device(plab, manager, job_id, PASSWORD)
    with read_session(plab.engine) as s:
        job = s.get(BuildJob, job_id)
        message = s.exec(select(OutboxMessage).where(OutboxMessage.channel == "dicom")).one()
    assert message.state == "pending"  # queued by the release, not sent inside it
    assert deliver_outbox(plab) == 1
    with read_session(plab.engine) as s:
        message = s.get(OutboxMessage, message.id)
    assert message.state == "sent", message.last_error
    uid = message.payload["sop_instance_uid"]
    ds = pydicom.dcmread(io.BytesIO(_find_instance(orthanc, uid)))
    assert ds.SOPClassUID == ENCAPSULATED_STL
    assert ds.StudyInstanceUID == orthanc.study.study_uid
    assert ds.PatientID == orthanc.study.patient_id  # the same patient and study in the PACS
    assert ds.Modality == "M3D" and ds.MIMETypeOfEncapsulatedDocument == "model/stl"
    mesh = bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength]
    assert hashlib.sha256(mesh).hexdigest() == job.mesh_sha256
    referenced = sorted(item.ReferencedSOPInstanceUID for item in ds.SourceInstanceSequence)
    assert referenced == sorted(orthanc.study.instance_uids)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == orthanc.study.thin_series_uid
    # The device record shows the archived instance: JSON, page and PDF.
    client = create_app(plab.settings, plab).test_client()
    assert login(client, "tech").status_code == 302
    record = client.get(f"/devices/{job.serial}.json").get_json()
    assert record["pacs_archive"]["sop_instance_uid"] == uid
    assert record["pacs_archive"]["state"] == "sent"
    page = client.get(f"/devices/{job.serial}").get_data(as_text=True)
    assert uid in page and "stored in the imaging study" in page
    pdf = client.get(f"/devices/{job.serial}.pdf").data
    assert _pdf_text(pdf).replace("\n", "").count(uid) >= 1
    with read_session(plab.engine) as s:
        archived = s.exec(select(AuditEvent).where(AuditEvent.action == "device.archived")).one()
    assert archived.entity_id == job.serial and archived.after["sop_instance_uid"] == uid


def _pdf_text(pdf: bytes) -> str:
    import pypdfium2

    doc = pypdfium2.PdfDocument(pdf)
    return "".join(page.get_textpage().get_text_range() for page in doc)


def test_a_pacs_that_is_down_never_blocks_the_release_and_the_archive_is_retried(
    tmp_path, database_url, printers_dir, orthanc, people
):
    lab = _lab(tmp_path, database_url, printers_dir, pacs_section(orthanc))
    crew = people  # the same database as the `lab` fixture: the same people
    try:
        job_id = _release_with_study(lab, crew, tmp_path, orthanc)
        working = lab.hospital
        lab.hospital = dataclasses.replace(
            working, pacs=dataclasses.replace(working.pacs, port=free_port())
        )  # the PACS goes down after the lookup
        started = time.monotonic()
        release.release_device(lab, crew["manager"], job_id, PASSWORD)
        assert time.monotonic() - started < 5  # no network call inside the release
        for _ in range(2):
            deliver_outbox(lab)
        with read_session(lab.engine) as s:
            message = s.exec(select(OutboxMessage).where(OutboxMessage.channel == "dicom")).one()
            serial = s.get(BuildJob, job_id).serial
        assert message.state == "failed" and message.attempts == 2
        assert "cannot be reached" in message.last_error or "does not answer" in message.last_error
        admin = create_app(lab.settings, lab).test_client()
        assert login(admin, "admin").status_code == 302
        page = admin.get("/admin/outbox/").get_data(as_text=True)
        assert serial in page and "failed" in page
        lab.hospital = working  # the PACS is back; an administrator sends it again
        outbox.retry(lab, crew["admin"], message.id)
        assert deliver_outbox(lab) == 1
        with read_session(lab.engine) as s:
            message = s.get(OutboxMessage, message.id)
        assert message.state == "sent"
        _find_instance(orthanc, message.payload["sop_instance_uid"])
    finally:
        lab.engine.dispose()


def test_no_study_on_the_order_means_no_archive(plab, people, tmp_path):
    manager = lab_manager(plab, people)
    job_id = printed_device(plab, people, tmp_path, device_type="anatomical_model")
    tech = people["tech"]
    postprocessing.record_step(plab, tech, job_id, "support_removal", {"method": "manual"})
    postprocessing.record_step(plab, tech, job_id, "visual_check", {"finding": "no defects"})
    postprocessing.record_measurement(
        plab, tech, job_id, feature="neck", designed_mm=22.0, measured_mm=21.9, tolerance_mm=1.0
    )
    release.release_device(plab, manager, job_id, PASSWORD)
    with unit_of_work(plab.engine) as s:
        assert s.exec(select(OutboxMessage).where(OutboxMessage.channel == "dicom")).all() == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 0}, "port"),
        ({"called_ae": "A" * 17}, "called_ae"),
        ({"calling_ae": ""}, "calling_ae"),
        ({"timeout": 3}, "unknown option"),
    ],
)
def test_bad_pacs_settings_stop_the_start_naming_the_option(tmp_path, change, message):
    section = {"host": "127.0.0.1", "port": 104, "called_ae": "PACS", "calling_ae": "POCPRINT"}
    settings = make_settings(tmp_path, "sqlite://", tmp_path, pacs={**section, **change})
    with pytest.raises(ConfigError, match=message):
        hospital_links(settings)


def test_a_study_is_found_by_its_uid_too(plab, people, orthanc):
    found = pacs.lookup_study(plab, people["tech"], study_uid=orthanc.study.study_uid)
    assert found.fields["accession_number"] == orthanc.study.accession
    assert found.imaging["source_series_uid"] == orthanc.study.thin_series_uid
    with pytest.raises(pacs.PacsUnavailable, match="one of them"):
        pacs.lookup_study(
            plab, people["tech"], accession="ACC-1", study_uid=orthanc.study.study_uid
        )
    with pytest.raises(Forbidden):  # looking up patients' studies is for people who order
        pacs.lookup_study(plab, people["auditor"], accession=orthanc.study.accession)
