"""The planning page in Debian's chromium at the lab's tablet size (820 x 1180), as the lab
manager: a Gantt lane per printer with its planned jobs, the late case named with what would
save it; axe-core, tap targets, no horizontal overflow (issue 12, part 2)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlmodel import select

from pocprint.services.lab import build_lab
from pocprint.store.db import read_session, unit_of_work, upgrade
from pocprint.store.models import Case, DeviceOutcome, User

from a11y import check_page
from conftest import PASSWORD, make_settings, write_printer
from planning_helpers import late_case_queue, past_device
from service_process import ServiceProcess
from spine_helpers import TABLET, chromium, make_people

pytestmark = [pytest.mark.browser]


@pytest.fixture
def service(tmp_path):
    """pocprint as a process on SQLite with one printer, a history and a queue of two."""
    from pocprint.demo.octoprint_server import free_port
    from pocprint.services.fleet import sync_printers

    printers_dir = tmp_path / "printers"
    write_printer(printers_dir, "bench-a", f"http://127.0.0.1:{free_port()}", key="unused")
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'pocprint.db'}", printers_dir)
    upgrade(settings.database_url)
    make_people(settings)
    lab = build_lab(settings)
    sync_printers(lab)
    with read_session(lab.engine) as s:
        uid = s.exec(select(User.id).where(User.username == "manager")).one()
    late, calm = late_case_queue(lab, uid, "bench-a")
    with read_session(lab.engine) as s:
        presc = s.exec(select(User.id).where(User.username == "presc")).one()
    used = past_device(lab, presc, device_type="surgical_guide", lead_h=30, printer="bench-a")
    with unit_of_work(lab.engine) as s:
        s.get(Case, used["case_id"]).procedure_date = date.today() - timedelta(days=1)
    lab.engine.dispose()
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        yield service, late, calm, used
    finally:
        service.stop()


def test_planning_page_at_tablet_size(service):
    svc, late, calm, _used = service
    with chromium() as browser:
        page = browser.new_context(viewport=TABLET, has_touch=True).new_page()
        page.goto(f"{svc.url}/login")
        page.fill("input[name=username]", "manager")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.click("nav >> text=Planning")
        page.wait_for_load_state()
        lane = page.locator('figure.lane[data-printer="bench-a"] svg')
        assert lane.is_visible()
        box = lane.bounding_box()
        assert box["width"] <= TABLET["width"] and box["height"] > 20
        bars = page.locator("rect.job")
        assert bars.count() == 2
        first = page.locator(f'rect[data-serial="{late["serial"]}"]')
        second = page.locator(f'rect[data-serial="{calm["serial"]}"]')
        # EDF: the case needed tomorrow prints first, and is drawn left of the other.
        assert first.bounding_box()["x"] < second.bounding_box()["x"]
        assert "at-risk" in first.get_attribute("class")
        risk = page.locator(f'#at-risk li[data-case="{late["code"]}"]')
        assert risk.is_visible()
        assert "needed by" in risk.inner_text()
        problems = {k: v for k, v in check_page(page, "manager-planning").items() if v}
        assert not problems, problems


def _signed_in(browser, base: str, username: str):
    page = browser.new_context(viewport=TABLET, has_touch=True).new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_metrics_and_the_outcome_form_at_tablet_size(service):
    svc, _late, _calm, used = service
    with chromium() as browser:
        page = _signed_in(browser, svc.url, "manager")
        page.click("nav >> text=Metrics")
        page.wait_for_load_state("networkidle")
        charts = page.locator("img.chart")
        assert charts.count() == 6
        for i in range(6):  # every chart loaded as a real image
            assert page.evaluate("(img) => img.naturalWidth", charts.nth(i).element_handle()) > 300
        problems = {k: v for k, v in check_page(page, "manager-metrics").items() if v}
        assert not problems, problems

        page = _signed_in(browser, svc.url, "presc")
        page.goto(f"{svc.url}/cases/new")
        warning = page.locator("#lead-time-warning")
        page.check("input[name=device_type][value=surgical_guide]")
        guide = page.locator('#lead-times li[data-device-type="surgical_guide"]')
        assert "chosen" in guide.get_attribute("class")
        assert "ready by" in guide.inner_text() and "90 %" in guide.inner_text()
        page.fill("input[name=needed_by]", date.today().isoformat())
        assert warning.is_visible()  # the guides took 40 h: today is too soon
        page.fill("input[name=needed_by]", (date.today() + timedelta(days=30)).isoformat())
        assert warning.is_hidden()
        problems = {k: v for k, v in check_page(page, "presc-order-form").items() if v}
        assert not problems, problems
        page.goto(f"{svc.url}/cases/{used['case_id']}")
        page.click("#outcomes-due >> text=Tell the lab how it did")
        page.wait_for_load_state()
        problems = {k: v for k, v in check_page(page, "presc-outcome").items() if v}
        assert not problems, problems
        page.check("input[name=used_as_intended][value=yes]")
        page.check("input[name=plan_changed][value=yes]")
        page.check("input[name=fit][value=good]")
        page.fill("input[name=time_saved_min]", "20")
        page.click("form.outcome-form button[type=submit]")
        page.wait_for_load_state()
        assert f"/cases/{used['case_id']}" in page.url
    settings = svc.settings
    from sqlalchemy import create_engine

    engine = create_engine(settings.database_url)
    with read_session(engine) as s:
        (row,) = s.exec(select(DeviceOutcome)).all()
    engine.dispose()
    assert (row.used_as_intended, row.plan_changed, row.fit, row.time_saved_min) == (
        True,
        True,
        "good",
        20,
    )
