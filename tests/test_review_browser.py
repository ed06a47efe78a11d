"""The radiologist's review, segmentation sign-off and design approval in a real browser
(Debian's chromium driven by Playwright, headless) at a tablet viewport, against pocprint
running as its own process."""

from __future__ import annotations

import pytest
import trimesh
from sqlmodel import select

from pocprint.services import cases as case_service
from pocprint.services.lab import build_lab
from pocprint.services.mesh_processing import process_part
from pocprint.services.parts import confirm_units
from pocprint.services.users import authenticate
from pocprint.store.db import read_session, upgrade
from pocprint.store.models import Case, Signature

from conftest import PASSWORD, make_settings, order_fields
from service_process import ServiceProcess
from spine_helpers import TABLET, chromium, make_people

pytestmark = [pytest.mark.browser]


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def ordered(tmp_path, printers_dir):
    """A service process on SQLite with one case waiting for review."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'pocprint.db'}", printers_dir)
    upgrade(settings.database_url)
    make_people(settings)
    lab = build_lab(settings)
    tech = authenticate(lab, "tech", PASSWORD)
    case_id = case_service.create_case(
        lab, tech, **order_fields(patient_code="PX-7001", slice_thickness_mm=2.5)
    )
    mesh = tmp_path / "cube.stl"
    trimesh.creation.box(extents=(20, 20, 20)).export(mesh)
    part_id = case_service.upload_part(lab, tech, case_id, "cube.stl", mesh)
    assert process_part(lab, part_id)
    confirm_units(lab, tech, part_id, "mm")
    assert process_part(lab, part_id)
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        yield service, lab, case_id
    finally:
        service.stop()
        lab.engine.dispose()


def test_radiologist_reviews_a_case_on_a_tablet(browser, ordered, tmp_path):
    service, lab, case_id = ordered
    page = browser.new_context(viewport=TABLET, has_touch=True).new_page()
    page.goto(f"{service.url}/login")
    page.fill("input[name=username]", "rad")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{service.url}/board/")

    page.goto(f"{service.url}/cases/{case_id}")
    assert "above 2 mm" in page.inner_text(".flash.warn")
    assert page.get_attribute("#gate", "data-review-status") == "awaiting_review"
    page.click("a:has-text('Review appropriateness')")
    page.wait_for_selector("form#review")

    # Filter the catalog, pick the scenario: its band shows and no justification is needed.
    page.fill("#scenario-filter", "abdominal aortic")
    visible = page.locator(".scenario:visible")
    assert visible.count() == 2  # the match, and "no matching scenario" (always offered)
    page.click(".scenario:visible:has-text('Complex abdominal aortic aneurysm')")
    assert "Usually appropriate" in page.inner_text("#selected-band")
    page.click("label.choice:has(input[name=decision][value=approve])")
    assert page.locator("#justification-needed").is_hidden()

    # No catalog match: approving now needs a written justification.
    page.click(".scenario:has(input[value=none])")
    assert "Not in the catalog" in page.inner_text("#selected-band")
    assert page.locator("#justification-needed").is_visible()

    # Large touch targets on the review page.
    heights = page.eval_on_selector_all(
        "form#review button, form#review label.choice",
        "els => els.filter(e => !e.hidden).map(e => e.getBoundingClientRect().height)",
    )
    assert heights and min(heights) >= 44, heights

    page.click(".scenario:visible:has-text('Complex abdominal aortic aneurysm')")
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Record decision')")
    page.wait_for_selector("text=Review recorded and signed")
    assert page.get_attribute("#gate", "data-review-status") == "approved"
    signature = page.inner_text("#gate .signature")
    assert "Reviewed appropriateness" in signature and "Rad Tester" in signature
    page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
    with read_session(lab.engine) as s:
        assert s.get(Case, case_id).review_status == "approved"

    # Segmentation sign-off with an overlay screenshot, then the design approval.
    overlay = tmp_path / "overlay.png"
    page.screenshot(path=str(overlay))
    page.set_input_files("form.segmentation input[name=overlay]", str(overlay))
    page.fill("form.segmentation input[name=password]", PASSWORD)
    page.click("button:has-text('Sign segmentation')")
    page.wait_for_selector("text=Segmentation signed")
    page.fill("form.sign input[name=password]", PASSWORD)
    page.click("button:has-text('Approve and sign')")
    page.wait_for_selector("text=Design approved and signed")
    states = page.eval_on_selector_all("#gate .step", "els => els.map(e => e.className)")
    assert states and all("step-valid" in c for c in states), states
    with read_session(lab.engine) as s:
        signed = s.exec(select(Signature).where(Signature.meaning == "approved segmentation")).one()
    assert lab.blobs.path(signed.content["overlay_sha256"]).read_bytes() == overlay.read_bytes()
