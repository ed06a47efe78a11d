"""The planning page in Debian's chromium at the lab's tablet size (820 x 1180), as the lab
manager: a Gantt lane per printer with its planned jobs, the late case named with what would
save it; axe-core, tap targets, no horizontal overflow (issue 12, part 2)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlmodel import select

from pocprint.services.lab import build_lab
from pocprint.store.db import read_session, upgrade
from pocprint.store.models import User, utcnow

from a11y import check_page
from conftest import PASSWORD, make_settings, write_printer
from planning_helpers import past_device
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
    for _ in range(5):
        past_device(lab, uid, device_type="surgical_guide", lead_h=40, printer="bench-a")
    late = past_device(
        lab,
        uid,
        device_type="surgical_guide",
        lead_h=40,
        stop_after="sliced",
        ordered_at=utcnow() - timedelta(hours=2),
        needed_by=date.today() + timedelta(days=1),
        estimate_h=20,
    )
    calm = past_device(
        lab,
        uid,
        device_type="surgical_guide",
        lead_h=40,
        stop_after="sliced",
        needed_by=date.today() + timedelta(days=30),
        estimate_h=3,
    )
    lab.engine.dispose()
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    try:
        yield service, late, calm
    finally:
        service.stop()


def test_planning_page_at_tablet_size(service):
    svc, late, calm = service
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
