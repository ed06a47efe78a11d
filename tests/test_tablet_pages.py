"""Issue 13 on the pages, with Flask's test client on a real database (SQLite, and
PostgreSQL when configured): problems beside their fields, a refused signature keeps what was
typed, warnings the approver signs, a rejected build that is not a dead end, labels only for
released devices, the site's time zone, the public base URL, the cases list filters."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import trimesh
from sqlmodel import select
from test_web import csrf_of, login

from pocprint.services import cases as case_service
from pocprint.services import gate
from pocprint.services.mesh_processing import process_part
from pocprint.services.parts import confirm_units
from pocprint.services.review import review_case, sign_segmentation
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Case, Delivery, Part, QaDisposition, Signature
from pocprint.web import create_app

from conftest import PASSWORD, USUAL_SCENARIO, order_fields, order_form
from trace_helpers import printed_device


def _client(app, username):
    client = app.test_client()
    login(client, username)
    return client


def _post(client, page: str, action: str, data: dict):
    token = csrf_of(client.get(page).get_data(as_text=True))
    return client.post(action, data={**data, "csrf_token": token})


def test_order_form_shows_every_problem_beside_its_field_and_keeps_what_was_typed(lab, people):
    app = create_app(lab.settings, lab)
    tech = _client(app, "tech")
    form = order_form(icd10_code="nope", patient_code="PX-0777")
    form.update(slice_thickness_mm="thick", material="", anatomy_laterality="")
    r = _post(tech, "/cases/new", "/cases/new", form)
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    # A bad number does not hide the other problems: all four at once, each at its field.
    for field, words in (
        ("slice_thickness_mm", "slice thickness must be a number"),
        ("icd10_code", "ICD-10"),
        ("material", "choose the material"),
        ("anatomy", "choose the side"),
    ):
        match = re.search(rf'<span class="field-error" id="err-{field}">([^<]*)</span>', html)
        assert match and words in match.group(1), (field, match and match.group(1))
    assert 'aria-describedby="err-slice_thickness_mm"' in html
    assert 'value="PX-0777"' in html and 'value="thick"' in html  # typed values kept
    with read_session(lab.engine) as s:
        assert s.exec(select(Case)).all() == []  # nothing half-written


def test_the_side_has_no_default_in_the_order_form(lab, people):
    app = create_app(lab.settings, lab)
    html = _client(app, "tech").get("/cases/new").get_data(as_text=True)
    first = html.split('name="anatomy_laterality"', 1)[1].split("</select>", 1)[0]
    assert re.search(r'<option value="">— choose the side —</option>', first)
    assert "selected" not in first
    for words in ("left", "right", "midline", "bilateral", "n/a"):
        assert words in first


def test_a_wrong_signature_password_keeps_scenario_decision_and_justification(lab, people):
    app = create_app(lab.settings, lab)
    case_id = case_service.create_case(lab, people["tech"], **order_fields())
    rad = _client(app, "rad")
    page = f"/cases/{case_id}/review"
    r = _post(
        rad,
        page,
        page,
        {
            "scenario": USUAL_SCENARIO,
            "decision": "approve",
            "justification": "classic endograft planning case",
            "password": "not my password",
        },
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "password does not match" in html
    assert f'value="{USUAL_SCENARIO}" required checked' in html
    assert 'value="approve" required checked' in html
    assert "classic endograft planning case</textarea>" in html
    with read_session(lab.engine) as s:
        assert s.exec(select(Signature)).all() == []


def test_scenarios_are_ordered_by_the_orders_anatomy_and_indication(lab, people):
    app = create_app(lab.settings, lab)
    case_id = case_service.create_case(lab, people["tech"], **order_fields())
    html = _client(app, "rad").get(f"/cases/{case_id}/review").get_data(as_text=True)
    scores = [int(s) for s in re.findall(r'data-score="(\d+)"', html)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    first = html.split('class="choice scenario match"', 1)[1][:600]
    assert "aneurysm" in first.lower()
    assert 'id="scenario-filter"' in html  # and the list is searchable


def _thin_plate_part(lab, people, tmp_path):
    """A 0.4 mm plate: every wall is thinner than the 0.8 mm minimum feature."""
    case_id = case_service.create_case(lab, people["tech"], **order_fields())
    review_case(
        lab, people["rad"], case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
    )
    mesh = tmp_path / "plate.stl"
    trimesh.creation.box(extents=(40, 30, 0.4)).export(mesh)
    part_id = case_service.upload_part(lab, people["tech"], case_id, "plate.stl", mesh)
    assert process_part(lab, part_id)
    with read_session(lab.engine) as s:
        unclear = s.get(Part, part_id).state == "awaiting_units"
    if unclear:  # 40 x 30 mm or 400 x 300 mm: the technician says millimetres
        confirm_units(lab, people["tech"], part_id, "mm")
        assert process_part(lab, part_id)
    sign_segmentation(lab, people["rad"], part_id, PASSWORD)
    return case_id, part_id


def test_every_mesh_warning_is_on_the_repair_page_in_the_approval_form_and_signed(
    lab, people, tmp_path
):
    app = create_app(lab.settings, lab)
    case_id, part_id = _thin_plate_part(lab, people, tmp_path)
    rad = _client(app, "rad")
    html = rad.get(f"/parts/{part_id}").get_data(as_text=True)
    assert "thinner than the minimum feature size" in html
    assert "Every printability check passed" not in html
    form = html.split('id="approve"', 1)[1].split("</form>", 1)[0]
    assert "your signature covers them" in form and "thinner than the minimum feature" in form
    r = _post(rad, f"/parts/{part_id}", f"/cases/parts/{part_id}/approve", {"password": PASSWORD})
    assert r.status_code == 303
    with read_session(lab.engine) as s:
        signed = s.exec(select(Signature).where(Signature.meaning == gate.APPROVED_DESIGN)).one()
        part, case = s.get(Part, part_id), s.get(Case, case_id)
        assert signed.content["material"] == "PLA"
        assert any("thinner than the minimum feature" in w for w in signed.content["warnings"])
        assert signed.content == gate.design_content(part, case)


def test_a_wrong_password_on_the_approval_keeps_the_comment(lab, people, tmp_path):
    app = create_app(lab.settings, lab)
    _case_id, part_id = _thin_plate_part(lab, people, tmp_path)
    rad = _client(app, "rad")
    r = _post(
        rad,
        f"/parts/{part_id}",
        f"/cases/parts/{part_id}/approve",
        {"password": "wrong", "comment": "plate checked at the tablet", "page": "repair"},
    )
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "password does not match" in html
    assert 'value="plate checked at the tablet"' in html


def _printed(lab, people, tmp_path, **kwargs) -> tuple[int, str]:
    """A build whose print ended (test setup: the printer's report is written directly)."""
    job_id = printed_device(lab, people, tmp_path, **kwargs)
    with unit_of_work(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        job.state, job.outcome, job.outcome_by, job.outcome_at = "printed", None, None, None
        return job_id, job.serial


def test_a_rejected_build_offers_reprint_or_scrap_and_never_shows_completed(lab, people, tmp_path):
    app = create_app(lab.settings, lab)
    job_id, serial = _printed(lab, people, tmp_path, device_type="anatomical_model")
    tech = _client(app, "tech")
    page = f"/devices/{serial}"
    r = _post(
        tech, page, f"/board/jobs/{job_id}/outcome", {"outcome": "rejected", "note": "warped"}
    )
    assert r.status_code == 303
    html = tech.get(page).get_data(as_text=True)
    h1 = html.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert "build rejected" in h1 and "completed" not in h1.lower()
    assert "This build was rejected: reprint it" in html
    assert "labels-closed" in html and "label.pdf" not in html
    assert tech.get(f"{page}/label.pdf?size=62mm").status_code == 409
    r = _post(tech, page, f"{page}/disposition", {"decision": "reprint", "reason": "warped"})
    assert r.status_code == 303
    with read_session(lab.engine) as s:
        disposition = s.exec(select(QaDisposition)).one()
        reprint = s.get(BuildJob, disposition.reprint_job_id)
        assert disposition.build_job_id == job_id and reprint.state == "slice_queued"
        assert reprint.mesh_sha256 == s.get(BuildJob, job_id).mesh_sha256


def test_labels_only_after_release_and_they_carry_the_release(lab, people, tmp_path):
    import pypdfium2 as pdfium

    base = "https://3dlab.hospital.example"
    lab = dataclasses.replace(lab, settings=lab.settings.with_(public_base_url=base))
    app = create_app(lab.settings, lab)
    job_id = printed_device(lab, people, tmp_path, device_type="anatomical_model")
    with read_session(lab.engine) as s:
        serial = s.get(BuildJob, job_id).serial
    tech, manager = _client(app, "tech"), _client(app, "manager")
    page = f"/devices/{serial}"
    assert tech.get(f"{page}/label.pdf").status_code == 409
    for step, params in (
        ("support_removal", {"param-method": "manual"}),
        ("visual_check", {"param-finding": "no defects"}),
    ):
        assert _post(tech, page, f"{page}/steps/{step}", params).status_code == 303
    for feature in ("length", "width", "height"):
        data = {"feature": feature, "designed_mm": "20", "measured_mm": "20.1", "tolerance_mm": "1"}
        assert _post(tech, page, f"{page}/measurements", data).status_code == 303
    r = _post(manager, page, f"{page}/release", {"password": "wrong", "comment": "all checked"})
    assert r.status_code == 422 and 'value="all checked"' in r.get_data(as_text=True)
    assert _post(manager, page, f"{page}/release", {"password": PASSWORD}).status_code == 303
    html = tech.get(page).get_data(as_text=True)
    assert f"QR: {base}/devices/{serial}" in html and "Released " in html
    pdf = tech.get(f"{page}/label.pdf?size=62mm")
    assert pdf.status_code == 200
    text = pdfium.PdfDocument(pdf.data)[0].get_textpage().get_text_range()
    assert "Released " in text and "Manager Tester" in text


def test_times_are_shown_and_typed_in_the_sites_time_zone(lab, people, tmp_path):
    lab = dataclasses.replace(lab, settings=lab.settings.with_(time_zone="Europe/Berlin"))
    app = create_app(lab.settings, lab)
    job_id = printed_device(lab, people, tmp_path, device_type="anatomical_model")
    with unit_of_work(lab.engine) as s:
        serial = s.get(BuildJob, job_id).serial
    tech = _client(app, "tech")
    html = tech.get(f"/devices/{serial}").get_data(as_text=True)
    assert "(UTC)" not in html and "Europe/Berlin" in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d CE[S]?T", html)
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", html)  # never microseconds
    # 2026-01-10 09:30 typed in Berlin (CET, UTC+1) is stored as 08:30 UTC.
    page = f"/devices/{serial}"
    r = _post(
        tech,
        page,
        f"{page}/steps/support_removal",
        {"param-method": "manual", "performed_at": "2026-01-10T09:30"},
    )
    assert r.status_code == 303
    from pocprint.store.models import PostProcessStep

    with read_session(lab.engine) as s:
        step = s.exec(select(PostProcessStep)).one()
        moment = (
            step.performed_at if step.performed_at.tzinfo else step.performed_at.replace(tzinfo=UTC)
        )
        assert moment == datetime(2026, 1, 10, 8, 30, tzinfo=UTC)
    assert "2026-01-10 09:30 CET" in tech.get(page).get_data(as_text=True)
    assert Delivery  # (delivery uses the same field parser)


def test_cases_list_shows_the_real_state_with_filters_and_search(lab, people, tmp_path):
    app = create_app(lab.settings, lab)
    waiting = case_service.create_case(lab, people["tech"], **order_fields(patient_code="PX-W1"))
    job_id = printed_device(lab, people, tmp_path, device_type="anatomical_model")
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        built_code, serial = s.get(Case, job.case_id).code, job.serial
        waiting_code = s.get(Case, waiting).code
        case_id, part_id = job.case_id, job.part_id
    # (the helper prints without the review and sign-off; sign them so the gate holds)
    review_case(
        lab, people["rad"], case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD
    )
    sign_segmentation(lab, people["rad"], part_id, PASSWORD)
    rad, tech = _client(app, "rad"), _client(app, "tech")
    html = tech.get("/cases/").get_data(as_text=True)
    assert "Waiting for the appropriateness review" in html
    assert f"{serial}: post-processing" in html  # not "approved"
    assert waiting_code in rad.get("/cases/?mine=1").get_data(as_text=True)
    mine = tech.get("/cases/?mine=1").get_data(as_text=True)
    assert built_code in mine and waiting_code not in mine
    found = tech.get(f"/cases/?q={serial[-6:]}").get_data(as_text=True)
    assert built_code in found and waiting_code not in found
    by_step = tech.get("/cases/?step=review").get_data(as_text=True)
    assert waiting_code in by_step and built_code not in by_step
    assert built_code not in tech.get("/cases/?needed_by=overdue").get_data(as_text=True)
    assert built_code not in tech.get("/cases/?device_type=surgical_guide").get_data(as_text=True)
