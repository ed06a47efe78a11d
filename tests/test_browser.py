"""The tablet pages in a real browser: Debian's chromium driven by Playwright, headless, at a
tablet viewport (820 x 1180)."""

from __future__ import annotations

import pytest

from pocprint.store.db import upgrade

from conftest import PASSWORD, make_settings, write_printer
from fleet_helpers import stock_printers
from octoprint_fixtures import octoprint_or_skip, running_octoprint
from service_process import ServiceProcess
from spine_helpers import E2E_MESH, TABLET, chromium, fill_order_form, make_people

pytestmark = [pytest.mark.browser, pytest.mark.octoprint]


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def service(tmp_path):
    """pocprint on SQLite (the embedded default) with one real OctoPrint printer."""
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octoprint") as printer:
        printers_dir = tmp_path / "printers"
        write_printer(printers_dir, "bench-a", printer.url, key=printer.api_key)
        settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'pocprint.db'}", printers_dir)
        upgrade(settings.database_url)
        make_people(settings)
        stock_printers(settings)  # an in-date lot on the printer: the job is not held
        service = ServiceProcess(settings, tmp_path / "service.log").start()
        try:
            yield service
        finally:
            service.stop()


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/board/")


def test_technician_orders_uploads_and_sees_the_job_on_the_board(browser, service, tmp_path):
    base = service.url
    tech = browser.new_context(viewport=TABLET, has_touch=True).new_page()
    sign_in(tech, base, "tech")
    assert tech.locator(".tile[data-printer=bench-a]").is_visible()

    tech.click("text=New case")
    fill_order_form(tech, "PX-2210", "Complex abdominal aortic aneurysm", "anatomical_model")
    tech.click("button:has-text('Create case')")
    tech.wait_for_selector("text=Case created")
    case_url = tech.url

    tech.set_input_files("input[name=mesh]", str(E2E_MESH))
    tech.click("button:has-text('Upload')")
    tech.wait_for_selector("text=Mesh stored")
    # The case page refreshes itself until the repair is done.
    tech.wait_for_selector(".part .badge.verdict-repaired", timeout=60_000)
    assert "yes" in tech.locator("table.numbers tr:has-text('Watertight')").inner_text()

    # Every button a gloved finger must hit is at least 44 px tall.
    tech.goto(f"{base}/board/")
    heights = tech.eval_on_selector_all(
        "button, nav a", "els => els.map(e => e.getBoundingClientRect().height)"
    )
    assert heights and min(heights) >= 44, heights
    tech.wait_for_selector(".intake-row:has-text('waiting for approval')")

    # The radiologist signs the design on another tablet.
    rad = browser.new_context(viewport=TABLET, has_touch=True).new_page()
    sign_in(rad, base, "rad")
    rad.goto(case_url)
    assert rad.locator("#upload").count() == 0  # radiologists do not upload
    rad.fill("form.sign input[name=password]", PASSWORD)
    rad.click("button:has-text('Approve and sign')")
    rad.wait_for_selector("text=Design approved and signed")
    assert "Rad Tester" in rad.inner_text(".signature")

    # The technician's board shows the job without a reload.
    marker = tech.evaluate("() => (window.__stay = Math.random())")
    row = tech.wait_for_selector("tr[data-job]", timeout=30_000)
    assert row.inner_text().startswith("D")
    # Sliced, but nobody reviewed appropriateness or signed the segmentation: the board does
    # not call it ready, it says it is held and why.
    tech.wait_for_selector("tr[data-job] .badge.state-held", timeout=60_000)
    held = tech.inner_text("tr[data-job]")
    assert "appropriateness review: not signed yet" in held
    assert "segmentation sign-off: not signed yet" in held
    assert tech.evaluate("() => window.__stay") == marker
    assert tech.locator(".tile[data-printer=bench-a] button:has-text('Plate clear')").is_visible()
    tech.screenshot(path=str(tmp_path / "board.png"), full_page=True)
    # The device record opens from the queue; its label waits for the release (the full
    # walk to a released, labelled device is tests/test_tablet_flow_browser.py).
    tech.click("tr[data-job] a:first-child")
    tech.wait_for_selector("h1:has-text('Device D')")
    assert tech.locator(".label-box .qr svg").count() == 0
    assert "Labels are printed once the device is released" in tech.inner_text(".label")
    assert "approved design" in tech.inner_text("body").lower()
    tech.screenshot(path=str(tmp_path / "record.png"), full_page=True)


def test_technician_confirms_the_unit_and_accepts_a_repair_that_needs_attention(
    browser, service, tmp_path
):
    import numpy as np
    import trimesh

    # A 40 mm box with one side missing: 4 cm would be as plausible as 40 mm, and the hole
    # is too big to close automatically.
    box = trimesh.creation.box(extents=(40, 40, 40))
    box.update_faces(np.arange(len(box.faces)) > 1)
    path = tmp_path / "open-box.stl"
    box.export(path)

    base = service.url
    tech = browser.new_context(viewport=TABLET, has_touch=True).new_page()
    sign_in(tech, base, "tech")
    tech.click("text=New case")
    fill_order_form(tech, "PX-2211", "Surgical guide trial", "surgical_guide")
    tech.click("button:has-text('Create case')")
    tech.set_input_files("input[name=mesh]", str(path))
    tech.click("button:has-text('Upload')")

    tech.wait_for_selector("button:has-text('Millimetres (proposed)')", timeout=60_000)
    assert "40.0 × 40.0 × 40.0 mm" in tech.inner_text(".units")
    tech.click("button:has-text('Millimetres (proposed)')")
    tech.wait_for_selector(".part .badge.verdict-needs_attention", timeout=60_000)
    assert "Unit: millimetres" in tech.inner_text(".part")
    assert tech.locator("form.sign").count() == 0  # nothing to approve yet

    tech.fill("form.accept textarea[name=reason]", "open side is the planned cutting plane")
    tech.click("button:has-text('Accept with this reason')")
    tech.wait_for_selector("text=Repair accepted with your reason")
    assert "planned cutting plane" in tech.inner_text(".signature")

    rad = browser.new_context(viewport=TABLET, has_touch=True).new_page()
    sign_in(rad, base, "rad")
    rad.goto(tech.url)
    assert rad.locator("form.sign button:has-text('Approve and sign')").is_visible()
    tech.screenshot(path=str(tmp_path / "accepted.png"), full_page=True)
