"""The device history record assembled from the database, its exports (JSON, PDF, the
Annex XIII statement) and labels whose codes decode back to the device."""

from __future__ import annotations

from datetime import date, timedelta

import pypdfium2 as pdfium
import pytest
import zxingcpp
from sqlmodel import select

from pocprint.reads.records import device_record
from pocprint.services import maintenance, materials, postprocessing, release
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob, Printer, utcnow
from pocprint.trace.annex_xiii import NotCustomMade, statement_text
from pocprint.trace.labels import label_data, label_pdf, label_sheet_pdf
from pocprint.trace.pdf import dhr_pdf, statement_pdf
from pocprint.trace.site import Site, gtin_valid, load_site

from conftest import PASSWORD
from trace_helpers import lab_manager, printed_device

SITE = Site(
    name="Example Hospital 3D lab",
    address="1 Hospital Road",
    sites=("Room B-012",),
    compliance_person="Lab Manager",
    gspr_statement="Conforms to the applicable Annex I requirements.",
)


def released_guide(lab, people, tmp_path) -> str:
    """A surgical guide printed from a loaded lot, post-processed, measured, released and
    delivered; returns its serial."""
    tech, manager = people["tech"], lab_manager(lab, people)
    with read_session(lab.engine) as s:
        pid = s.exec(select(Printer).order_by(Printer.id)).first().id
    lot = materials.receive_lot(
        lab,
        tech,
        material="PLA",
        manufacturer="Acme Filaments",
        lot_number="L2026-001",
        expiry=date.today() + timedelta(days=300),
        quantity_g=1000,
    )
    materials.load_lot(lab, tech, pid, lot)
    maintenance.record_entry(
        lab,
        tech,
        pid,
        kind="calibration",
        description="first layer and e-steps",
        result="passed",
        performed_at=utcnow() - timedelta(days=1),
        next_due=date.today() + timedelta(days=60),
    )
    job_id = printed_device(lab, people, tmp_path)
    for step, params in {
        "support_removal": {"method": "manual"},
        "wash": {"solvent": "none (FFF part)", "minutes": 0},
        "cure": {"minutes": 0, "temperature_c": 0},
        "sterilisation": {"method": "H2O2 plasma", "cycle_id": "STERRAD-88"},
    }.items():
        postprocessing.record_step(lab, tech, job_id, step, params)
    postprocessing.record_measurement(
        lab, tech, job_id, feature="sleeve spacing", designed_mm=24, measured_mm=24.2,
        tolerance_mm=0.5,
    )  # fmt: skip
    release.release_device(lab, manager, job_id, PASSWORD, "checked against the plan")
    release.record_delivery(lab, tech, job_id, delivered_to="Dr Surgeon", location="OR 3")
    with read_session(lab.engine) as s:
        return s.get(BuildJob, job_id).serial


def record_of(lab, serial):
    with read_session(lab.engine) as s:
        return device_record(s, serial)


def test_record_holds_material_lot_calibration_steps_qa_release_and_delivery(lab, people, tmp_path):
    serial = released_guide(lab, people, tmp_path)
    r = record_of(lab, serial)
    assert r["material"]["lot"]["lot_number"] == "L2026-001"
    assert r["material"]["consumed_g"] == 12.5
    assert r["printer"]["calibration_at_build"]["state"] == "current"
    assert r["printer"]["calibration_at_build"]["source"] == "maintenance log"
    steps = {s["step"]: s for s in r["post_processing"]["steps"]}
    assert steps["sterilisation"]["parameters"] == {
        "method": "H2O2 plasma",
        "cycle_id": "STERRAD-88",
    }
    assert steps["wash"]["operator"]["username"] == "tech"
    assert r["qa"]["passed"] and r["qa"]["measurements"][0]["deviation_mm"] == pytest.approx(0.2)
    assert r["release"]["state"] == "valid" and r["release"]["signer"] == "Manager Tester"
    assert r["delivery"]["delivered_to"] == "Dr Surgeon"
    assert r["quantities"] == {"built": 1, "accepted": 1, "released": 1}
    assert r["operators"]["release"] == ["Manager Tester"]
    assert r["order"]["prescriber_name"] == "Dr Prescribing Surgeon"
    assert "patient_identifiers" not in r["order"]
    meanings = [s["meaning"] for s in r["signatures"]]
    assert "approved design" in meanings and "released device" in meanings


def test_pdf_and_annex_xiii_statement_come_from_the_record(lab, people, tmp_path):
    serial = released_guide(lab, people, tmp_path)
    r = record_of(lab, serial)
    pdf = dhr_pdf(r, SITE)
    assert pdf.startswith(b"%PDF")
    document = pdfium.PdfDocument(pdf)
    text = " ".join(
        " ".join(document[i].get_textpage().get_text_range().split()) for i in range(len(document))
    )
    for expected in (
        serial,
        r["files"]["gcode"]["sha256"],
        "L2026-001",
        "STERRAD-88",
        "Manager Tester",
        "released device",
    ):
        assert expected in text, expected
    statement = statement_text(r, SITE)
    assert "Annex XIII" in statement and "PX-2001" in statement
    assert "3 mm flange" in statement and "Dr Prescribing Surgeon" in statement
    assert "Room B-012" in statement
    assert statement_pdf(r, SITE).startswith(b"%PDF")
    r["order"]["regulatory_route"] = "in_house"
    with pytest.raises(NotCustomMade, match="custom-made devices only"):
        statement_text(r, SITE)


def decoded(pdf: bytes) -> list:
    page = pdfium.PdfDocument(pdf)[0]
    return zxingcpp.read_barcodes(page.render(scale=300 / 72).to_pil())


def test_labels_decode_back_to_the_device(lab, people, tmp_path):
    serial = released_guide(lab, people, tmp_path)
    r = record_of(lab, serial)
    url = f"https://lab.example/devices/{serial}"
    label = label_data(r, url, SITE)
    for pdf in (label_pdf(label, "62mm"), label_pdf(label, "4x6"), label_sheet_pdf([label], 2)):
        codes = decoded(pdf)
        qr = [c for c in codes if c.format == zxingcpp.BarcodeFormat.QRCode]
        dm = [c for c in codes if c.format == zxingcpp.BarcodeFormat.DataMatrix]
        assert qr and all(c.text == url for c in qr)
        assert dm and all(c.content_type == zxingcpp.ContentType.GS1 for c in dm)
        built = date.fromisoformat(r["print"]["finished_at"][:10])
        assert dm[0].text == (
            f"(11){built:%y%m%d}(10)L2026-001(21){serial}(91){r['device']['design_version']}"
        )
        # FNC1 (GS, 0x1d) ends each variable-length field that is not last.
        assert f"21{serial}\x1d".encode() in dm[0].bytes
    assert "Sterilised: H2O2 plasma, cycle STERRAD-88" in label.sterile_text


def test_gtin_only_when_configured_and_valid(tmp_path):
    assert gtin_valid("05012345678900") and not gtin_valid("05012345678901")
    config = tmp_path / "traceability.toml"
    config.write_text('[labels.gtin]\nsurgical_guide = "05012345678901"\n')
    with pytest.raises(ValueError, match="not a valid GTIN-14"):
        load_site(config)
    config.write_text('[labels.gtin]\nsurgical_guide = "05012345678900"\n')
    assert load_site(config).gtins == {"surgical_guide": "05012345678900"}


def test_record_and_annex_xiii_pdfs_have_no_overlapping_text_nor_wrapped_timestamps(
    lab, people, tmp_path
):
    """Issue 13: the Annex XIII statement's long labels overlapped their values and the
    record wrapped its timestamps. Every PDF is rendered and its text boxes checked."""
    from pdf_layout import ISO_T, MICROSECONDS, WRAPPED_TIME, overlaps, page_texts

    serial = released_guide(lab, people, tmp_path)
    r = record_of(lab, serial)
    pdfs = {
        "record": dhr_pdf(r, SITE, "Europe/Berlin"),
        "annex-xiii": statement_pdf(r, SITE, "Europe/Berlin"),
    }
    for name, pdf in pdfs.items():
        assert overlaps(pdf) == [], name
        text = "\n".join(page_texts(pdf))
        assert not WRAPPED_TIME.search(text), (name, WRAPPED_TIME.search(text))
        assert not MICROSECONDS.search(text), (name, MICROSECONDS.search(text))
        assert not ISO_T.search(text), (name, ISO_T.search(text))
        for program_text in ("Icd10", "surgical_planning", "custom_made", "anatomical_model"):
            assert program_text not in text, (name, program_text)
    assert "CET" in "\n".join(page_texts(pdfs["record"])) or "CEST" in "\n".join(
        page_texts(pdfs["record"])
    )
    assert "ICD-10 code" in "\n".join(page_texts(pdfs["record"]))


def test_labels_have_no_overlapping_text(lab, people, tmp_path):
    from pdf_layout import overlaps

    serial = released_guide(lab, people, tmp_path)
    r = record_of(lab, serial)
    label = label_data(r, f"https://lab.example/devices/{serial}", SITE)
    for pdf in (label_pdf(label, "62mm"), label_pdf(label, "4x6"), label_sheet_pdf([label], 2)):
        assert overlaps(pdf) == []
