"""Traceability pages on a real database: roles checked on the server, CSRF on forms, the
tablet forms for lots, steps, QA and release, exports and the auditor's search."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pypdfium2 as pdfium
import pytest
import zxingcpp
from sqlmodel import select
from test_web import csrf_of, login

from pocprint.services.tokens import create_api_token
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob, MaterialLot, PostProcessStep, Printer, Signature
from pocprint.web import create_app

from conftest import PASSWORD
from trace_helpers import printed_device


@pytest.fixture
def app(lab, people):
    return create_app(lab.settings, lab)


def post(client, page: str, action: str, data: dict, **kwargs):
    token = csrf_of(client.get(page).get_data(as_text=True))
    return client.post(action, data={**data, "csrf_token": token}, **kwargs)


def test_pages_check_roles_on_the_server(app, lab, people, tmp_path):
    job_id = printed_device(lab, people, tmp_path, device_type="anatomical_model")
    with read_session(lab.engine) as s:
        serial = s.get(BuildJob, job_id).serial
    auditor, tech, rad = app.test_client(), app.test_client(), app.test_client()
    login(auditor, "auditor"), login(tech, "tech"), login(rad, "rad")
    assert auditor.get("/audit/").status_code == 200
    assert tech.get("/audit/").status_code == 403
    assert tech.get("/audit/devices.csv").status_code == 403
    assert auditor.get("/materials/").status_code == 200
    page = f"/devices/{serial}"
    # An auditor sees the record but cannot record a step or receive a lot.
    r = post(auditor, page, f"/devices/{serial}/steps/support_removal", {"param-method": "manual"})
    assert r.status_code == 403
    r = post(rad, "/materials/", "/materials/lots", {"material": "PLA"})
    assert r.status_code == 403
    # Without the CSRF token a form post is refused and nothing is written.
    r = tech.post(f"/devices/{serial}/steps/support_removal", data={"param-method": "manual"})
    assert r.status_code in (302, 303, 400)
    with read_session(lab.engine) as s:
        assert s.exec(select(PostProcessStep)).all() == []


def test_tablet_flow_lot_steps_qa_release_labels_and_exports(app, lab, people, tmp_path):
    tech, manager, auditor = app.test_client(), app.test_client(), app.test_client()
    login(tech, "tech"), login(manager, "manager"), login(auditor, "auditor")
    expiry = (date.today() + timedelta(days=90)).isoformat()
    r = post(
        tech,
        "/materials/",
        "/materials/lots",
        {
            "material": "PLA",
            "manufacturer": "Acme",
            "lot_number": "LOT-77",
            "expiry": expiry,
            "quantity_g": "750",
        },
    )
    assert r.status_code == 303
    with read_session(lab.engine) as s:
        lot = s.exec(select(MaterialLot)).one()
        printer = s.exec(select(Printer).order_by(Printer.id)).first()
    r = post(tech, "/materials/", f"/materials/printers/{printer.id}/lot", {"lot_id": lot.id})
    assert r.status_code == 303
    r = post(
        tech,
        "/materials/",
        f"/materials/printers/{printer.id}/log",
        {"kind_result": "calibration/passed", "description": "levelling", "next_due": expiry},
    )
    assert r.status_code == 303
    page = tech.get("/materials/").get_data(as_text=True)
    assert "LOT-77" in page and "current" in page

    job_id = printed_device(lab, people, tmp_path, device_type="anatomical_model")
    with read_session(lab.engine) as s:
        serial = s.get(BuildJob, job_id).serial
    record = f"/devices/{serial}"
    for step, params in (
        ("support_removal", {"param-method": "manual"}),
        ("visual_check", {"param-finding": "no defects"}),
    ):
        assert post(tech, record, f"/devices/{serial}/steps/{step}", params).status_code == 303
    # Release is refused while the dimensional check is open: the page says so, nothing signed.
    r = post(manager, record, f"/devices/{serial}/release", {"password": PASSWORD})
    assert r.status_code == 303
    assert "Dimensional check" in manager.get(record).get_data(as_text=True)
    with read_session(lab.engine) as s:
        assert not s.exec(select(Signature).where(Signature.meaning == "released device")).all()
    r = post(
        tech,
        record,
        f"/devices/{serial}/measurements",
        {"feature": "height", "designed_mm": "20", "measured_mm": "20.3", "tolerance_mm": "0.5"},
    )
    assert r.status_code == 303
    r = post(manager, record, f"/devices/{serial}/release", {"password": PASSWORD})
    assert r.status_code == 303
    r = post(tech, record, f"/devices/{serial}/delivery", {"delivered_to": "Dr Heart, OR 1"})
    assert r.status_code == 303
    html = tech.get(record).get_data(as_text=True)
    assert "Released device" in html and "Dr Heart, OR 1" in html and "LOT-77" in html

    pdf = tech.get(f"/devices/{serial}.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    label = tech.get(f"/devices/{serial}/label.pdf?size=62mm")
    image = pdfium.PdfDocument(label.data)[0].render(scale=300 / 72).to_pil()
    codes = {c.format: c.text for c in zxingcpp.read_barcodes(image)}
    assert codes[zxingcpp.BarcodeFormat.QRCode].endswith(f"/devices/{serial}")
    assert f"(21){serial}" in codes[zxingcpp.BarcodeFormat.DataMatrix]
    # Scanning the QR on the tablet opens the record.
    opened = tech.get(codes[zxingcpp.BarcodeFormat.QRCode].split("localhost", 1)[-1])
    assert opened.status_code == 200 and serial in opened.get_data(as_text=True)
    # The order is custom-made (trace_helpers.order): the Annex XIII statement comes from it.
    statement = tech.get(f"/devices/{serial}/annex-xiii.txt").get_data(as_text=True)
    assert "Annex XIII" in statement and "Dr Prescribing Surgeon" in statement

    found = auditor.get("/audit/?lot=LOT-77").get_data(as_text=True)
    assert serial in found
    exported = auditor.get("/audit/devices.csv?lot=LOT-77")
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [r["serial"] for r in rows] == [serial] and rows[0]["released"] == "True"
    as_json = auditor.get("/audit/devices.json?printer=" + printer.name).get_json()
    assert [r["serial"] for r in as_json] == [serial]
    assert auditor.get("/audit/?date_from=yesterday").status_code == 200  # message, not a 500
    events = auditor.get("/audit/events.json?action=post.").get_json()
    assert {e["action"] for e in events} == {"post.step"}
    case = as_json[0]["case"]
    assert auditor.get(f"/audit/registry/{case}.json").get_json()["case"] == case
    head = auditor.get("/audit/").get_data(as_text=True)
    assert 'id="chain-hash"' in head

    # The same queries through the JSON API, for the auditor only.
    tokens = {name: create_api_token(lab, name, "tests") for name in ("auditor", "tech")}

    def api(username, path):
        return app.test_client().get(path, headers={"Authorization": f"Bearer {tokens[username]}"})

    r = api("auditor", "/api/v1/audit/devices?lot=LOT-77")
    assert r.status_code == 200 and [d["serial"] for d in r.get_json()] == [serial]
    assert api("tech", "/api/v1/audit/devices?lot=LOT-77").status_code == 403
    assert api("tech", "/api/v1/audit/chain-head").status_code == 403
    head_json = api("auditor", "/api/v1/audit/chain-head").get_json()
    page = auditor.get("/audit/").get_data(as_text=True)
    assert f'value="{head_json["hash"]}"' in page and head_json["events"] > 10
    assert api("auditor", f"/api/v1/audit/registry/{case}").get_json()["case"] == case
    assert api("auditor", "/api/v1/audit/devices?date_from=soon").status_code == 400
