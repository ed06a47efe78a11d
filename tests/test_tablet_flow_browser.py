"""The whole tablet workflow through the pages, as each role, in Debian's chromium at the lab's
tablet size (820 x 1180): order, review, upload, unit, repair, sign-off, approval (a wrong
password first), slicing, a hold after an order edit (its reason shown on the case page and
the board, plate clear promising nothing), review again, plate clear, print on a real
OctoPrint virtual printer, outcome, post-processing, QA, release, labels and delivery. No API
shortcut: every step is a tap on a page. At every step the next action is offered to the
right person only. Every page visited gets axe-core (0 serious or critical violations), the
44 px tap-target check, a horizontal-overflow check and a screenshot in the artefacts."""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np
import pytest
import trimesh

from pocprint.store.db import upgrade

from a11y import check_page
from conftest import PASSWORD, make_settings, write_printer
from octoprint_fixtures import octoprint_or_skip, running_octoprint
from service_process import ServiceProcess
from spine_helpers import TABLET, chromium, make_people

pytestmark = [pytest.mark.browser, pytest.mark.octoprint, pytest.mark.slicer]

ROLES = ("tech", "rad", "presc", "manager", "auditor", "admin")


@pytest.fixture
def service(tmp_path):
    """pocprint as a process on SQLite, one real OctoPrint printer, the site in Berlin time."""
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octoprint") as printer:
        printers_dir = tmp_path / "printers"
        write_printer(printers_dir, "bench-a", printer.url, key=printer.api_key)
        settings = make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'pocprint.db'}",
            printers_dir,
            time_zone="Europe/Berlin",
            public_base_url="https://3dlab.hospital.example",
        )
        upgrade(settings.database_url)
        make_people(settings)
        service = ServiceProcess(settings, tmp_path / "service.log").start()
        try:
            yield service
        finally:
            service.stop()


PAGE_PROBLEMS: list[str] = []  # every page's failed checks, asserted at the end of the walk


class Person:
    """One role on its own tablet."""

    def __init__(self, browser, base: str, username: str):
        self.base, self.username = base, username
        self.page = browser.new_context(viewport=TABLET, has_touch=True).new_page()
        self.page.goto(f"{base}/login")
        self.check("login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()

    def open(self, path: str, name: str | None = None):
        self.page.goto(self.base + path)
        if name:
            self.check(name)
        return self.page

    def check(self, name: str) -> None:
        """axe-core, tap targets, overflow and a screenshot; failures are collected so one
        run names every page's problems, and the test fails on them at the end."""
        problems = {k: v for k, v in check_page(self.page, f"{self.username}-{name}").items() if v}
        if problems:
            PAGE_PROBLEMS.append(f"{self.username} {name} ({self.page.url}): {problems}")

    def flow(self) -> dict:
        box = self.page.locator("#flow")
        return {
            "step": box.get_attribute("data-step"),
            "status": box.get_attribute("data-status"),
            "actor": box.get_attribute("data-actor"),
            "action": (
                self.page.inner_text(".next-action")
                if self.page.locator(".next-action").count()
                else None
            ),
            "text": box.inner_text(),
        }


def expect_next(people: dict[str, Person], case_path: str, step: str, who: str, action):
    """On the case page, each role sees where the case is; only `who`'s roles get the action
    button (`action`), everyone else is told who acts next."""
    for username, person in people.items():
        person.open(case_path)
        flow = person.flow()
        assert flow["step"] == step, (username, flow)
        if action is not None and username in who:
            assert flow["action"] == action, (username, flow)
        else:
            assert flow["action"] is None, (username, flow)


def wait_case(person: Person, case_path: str, step: str, status: str | None = None, timeout=180):
    """Reload the case page until the case reaches the step (the worker is doing the rest)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        person.open(case_path)
        flow = person.flow()
        if flow["step"] == step and (status is None or flow["status"] == status):
            return flow
        time.sleep(1.5)
    raise AssertionError(f"case did not reach {step}/{status}: {person.flow()}")


def printed(tech: Person, case_path: str, serial: str, timeout: float = 300) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tech.open(case_path)
        flow = tech.flow()
        if flow["action"] == "Record the build outcome":
            return flow
        if flow["action"] == "Confirm a plate clear on the board":
            board = tech.open("/board/")
            button = board.locator(".tile[data-printer=bench-a] button:has-text('Plate clear')")
            if button.count():
                button.click()
                assert f"Job {serial} starts on bench-a next" in board.inner_text(".flash")
        time.sleep(2)
    raise AssertionError(f"the print did not end: {tech.flow()}")


def small_box(tmp_path):
    """A 24 x 18 x 12 mm block with a bevel: quick to slice and print; 24 mm or 24 cm are
    both plausible, so the technician confirms the unit."""
    mesh = trimesh.creation.box(extents=(24, 18, 12))
    mesh.vertices[mesh.vertices[:, 2] > 0] *= np.array([0.9, 0.9, 1.0])
    path = tmp_path / "block.stl"
    mesh.export(path)
    return path


def test_the_whole_tablet_workflow_through_the_pages_as_each_role(service, tmp_path):
    PAGE_PROBLEMS.clear()
    with chromium() as browser:
        people = {name: Person(browser, service.url, name) for name in ROLES}
        tech, rad, presc, manager = (people[n] for n in ("tech", "rad", "presc", "manager"))

        # --- the lab stocks the printer: a lot received and loaded (Materials page)
        page = tech.open("/materials/", "materials")
        page.click("summary:has-text('Receive a lot')")
        page.fill("input[name=material]", "PLA")
        page.fill("input[name=manufacturer]", "Test Filaments")
        page.fill("input[name=lot_number]", "LOT-FLOW-1")
        page.fill("input[name=expiry]", (date.today() + timedelta(days=365)).isoformat())
        page.fill("input[name=quantity_g]", "1000")
        page.click("button:has-text('Save lot')")
        lot = page.locator("select[name=lot_id] option:has-text('LOT-FLOW-1')").get_attribute(
            "value"
        )
        page.select_option("select[name=lot_id]", lot)
        page.click("form.inline-form button:has-text('Save')")
        assert "LOT-FLOW-1" in page.inner_text(".printer-materials")

        # --- order (technician): every problem at once, then the order
        page = tech.open("/cases/new", "new-case")
        page.fill("input[name=patient_code]", "PX-9001")
        page.fill("input[name=slice_thickness_mm]", "one")
        page.click("button:has-text('Create case')")
        assert page.locator(".field-error").count() >= 4  # side, material, clinician, ...
        tech.check("new-case-errors")
        assert page.input_value("input[name=patient_code]") == "PX-9001"
        page.fill("input[name=slice_thickness_mm]", "1.0")
        page.fill("input[name=ordering_clinician]", "Dr A. Vascular")
        page.fill("textarea[name=indication]", "Complex abdominal aortic aneurysm, endograft")
        page.check("input[value=surgical_planning]")
        page.check("input[name=diagnostic_use][value=no]")
        page.check("input[name=device_type][value=anatomical_model]")
        page.check("input[name=material][value=PLA]")
        page.select_option("select[name=anatomy_code] >> nth=0", "Abdomen|Vessels|")
        page.select_option("select[name=anatomy_laterality] >> nth=0", "midline")
        page.fill("input[name=needed_by]", (date.today() + timedelta(days=4)).isoformat())
        page.click("button:has-text('Create case')")
        page.wait_for_selector("text=Case created")
        case_path = page.url.replace(service.url, "")
        tech.check("case-ordered")
        expect_next(people, case_path, "review", {"rad"}, "Review appropriateness")

        # --- review (radiologist): a wrong password keeps every choice
        rad.open(case_path)
        rad.page.click(".next-action")
        rad.check("review")
        first = rad.page.locator("label.scenario.match").first
        assert "aneurysm" in first.inner_text().lower()  # ordered by anatomy and indication
        first.click()
        rad.page.check("input[name=decision][value=approve]")
        rad.page.fill("textarea[name=justification]", "endograft planning, usual indication")
        rad.page.fill("input[name=password]", "not my password")
        rad.page.click("button:has-text('Record decision')")
        rad.page.wait_for_selector("text=Nothing was signed")
        rad.check("review-wrong-password")
        assert rad.page.locator("label.scenario.match input").first.is_checked()
        assert rad.page.is_checked("input[name=decision][value=approve]")
        assert "usual indication" in rad.page.input_value("textarea[name=justification]")
        rad.page.fill("input[name=password]", PASSWORD)
        rad.page.click("button:has-text('Record decision')")
        rad.page.wait_for_selector("text=Review recorded and signed")
        expect_next(people, case_path, "mesh", {"tech"}, "Upload the mesh")

        # --- upload and unit (technician)
        tech.open(case_path)
        tech.page.click(".next-action")
        tech.page.set_input_files("input[name=mesh]", str(small_box(tmp_path)))
        tech.page.click("#upload button:has-text('Upload')")
        tech.page.wait_for_selector("text=Mesh stored")
        assert "Part 1" in tech.page.inner_text(".part h2")  # the first part is "Part 1"
        flow = wait_case(tech, case_path, "mesh", "current")
        assert flow["action"] == "Confirm the unit"
        tech.check("case-unit")
        tech.page.click(".next-action")
        tech.page.click("button:has-text('Millimetres (proposed)')")
        wait_case(tech, case_path, "signoff")
        tech.check("case-repaired")
        expect_next(people, case_path, "signoff", {"rad"}, "Sign the segmentation")

        # --- segmentation sign-off (radiologist)
        rad.open(case_path)
        rad.page.click(".next-action")
        rad.page.fill("form.segmentation input[name=password]", PASSWORD)
        rad.page.click("button:has-text('Sign segmentation')")
        rad.page.wait_for_selector("text=Segmentation signed")
        expect_next(people, case_path, "approval", {"rad", "presc"}, "Approve the design")

        # --- design approval (requesting clinician) on the repair page, wrong password first
        presc.open(case_path)
        presc.page.click(".next-action")
        presc.page.wait_for_selector("form#approve")
        presc.check("repair")
        presc.page.fill("form#approve input[name=comment]", "checked against the CT")
        presc.page.fill("form#approve input[name=password]", "wrong password")
        presc.page.click("form#approve button:has-text('Approve and sign')")
        presc.page.wait_for_selector("form#approve .field-error")
        assert (
            presc.page.input_value("form#approve input[name=comment]") == "checked against the CT"
        )
        presc.page.fill("form#approve input[name=password]", PASSWORD)
        presc.page.click("form#approve button:has-text('Approve and sign')")
        presc.page.wait_for_selector("text=Design approved and signed")

        # --- slicing (the worker), then the job waits for a printer
        flow = wait_case(tech, case_path, "print", "current")
        assert flow["action"] == "Confirm a plate clear on the board"
        serial = re.search(r"D\d{4}-\d{6}", flow["text"]).group(0)
        expect_next(people, case_path, "print", {"tech"}, "Confirm a plate clear on the board")

        # --- an order edit voids the review: the job is held, with the reason, everywhere
        page = tech.open(case_path.rstrip("/") + "/edit", "edit-order")
        page.fill("textarea[name=indication]", "Complex abdominal aortic aneurysm, fenestrated")
        page.click("button:has-text('Save the order')")
        page.wait_for_selector("text=Order updated")
        held = tech.flow()
        assert held["step"] == "review" and held["actor"] == "radiologist", held
        tech.check("case-held")
        for person in (tech, rad):
            person.open(case_path)
            assert "appropriateness review: void" in person.page.inner_text(".part .devices")
        page = tech.open("/board/", "board-held")
        row = page.locator(f"tr[data-job='{serial}']")
        assert "held" in row.inner_text() and "appropriateness review: void" in row.inner_text()
        page.click(".tile[data-printer=bench-a] button:has-text('Plate clear')")
        message = page.inner_text(".flash")
        assert "no job can start" in message and "will start" not in message
        assert "appropriateness review: void" in message

        # --- reviewed again; now the plate clear starts it
        rad.open(case_path)
        rad.page.click(".next-action")
        rad.page.locator("label.scenario.match").first.click()
        rad.page.check("input[name=decision][value=approve]")
        rad.page.fill("input[name=password]", PASSWORD)
        rad.page.click("button:has-text('Record decision')")
        rad.page.wait_for_selector("text=Review recorded and signed")
        # --- print on the real virtual printer (the plate was left clear: it goes at once;
        # should the clear have been used, the board offers it again), then the outcome
        flow = printed(tech, case_path, serial)
        assert flow["action"] == "Record the build outcome", flow
        expect_next(people, case_path, "print", {"tech"}, "Record the build outcome")
        tech.open(case_path)
        tech.page.click(".next-action")
        tech.check("device-printed")
        assert "label.pdf" not in tech.page.content()  # no label before release
        tech.page.click("button:has-text('Build accepted')")
        tech.page.wait_for_selector("text=Build outcome recorded")

        # --- post-processing and QA (technician)
        expect_next(people, case_path, "post", {"tech"}, "Record post-processing")
        tech.open(case_path)
        tech.page.click(".next-action")
        tech.check("device-post")
        for step, field, value in (
            ("Support removal", "param-method", "manual"),
            ("Visual inspection", "param-finding", "no defects"),
        ):
            item = tech.page.locator(f"ol.checklist li:has-text('{step}')")
            if not item.locator("details[open]").count():
                item.locator("summary").click()
            item.locator(f"select[name={field}]").select_option(value)
            item.locator("button[type=submit]").click()
            tech.page.wait_for_selector("text=Step recorded")
        expect_next(people, case_path, "qa", {"tech"}, "Add QA measurements")
        tech.open(case_path)
        tech.page.click(".next-action")
        tech.page.click("summary:has-text('Add a measurement')")
        tech.page.fill("input[name=feature]", "length")
        tech.page.fill("input[name=designed_mm]", "24")
        tech.page.fill("input[name=measured_mm]", "24.2")
        tech.page.click("button:has-text('Save measurement')")
        tech.page.wait_for_selector("text=Measurement recorded")

        # --- release (lab manager), labels with the release, delivery (technician)
        expect_next(people, case_path, "release", {"manager"}, "Sign the release")
        manager.open(case_path)
        manager.page.click(".next-action")
        manager.page.fill("#release input[name=password]", PASSWORD)
        manager.page.click("button:has-text('Sign release')")
        manager.page.wait_for_selector("text=Device released")
        manager.check("device-released")
        label = manager.page.inner_text(".label-box")
        assert "Released" in label and "Manager Tester" in label
        assert f"QR: https://3dlab.hospital.example/devices/{serial}" in manager.page.inner_text(
            ".label"
        )
        expect_next(people, case_path, "delivery", {"tech"}, "Record the delivery")
        tech.open(case_path)
        tech.page.click(".next-action")
        tech.page.fill("input[name=delivered_to]", "Dr A. Vascular, OR 3")
        tech.page.click("button:has-text('Record delivery')")
        tech.page.wait_for_selector("text=Delivery recorded")
        expect_next(people, case_path, "delivery", set(), None)
        assert tech.flow()["status"] == "done"

        # --- links both ways; the cases list shows the real state
        tech.open(f"/devices/{serial}")
        tech.page.click("a:has-text('← Case')")
        assert tech.page.url.split("#")[0].endswith(case_path)
        page = tech.open("/cases/?step=delivered", "cases-delivered")
        assert "PX-9001" in page.inner_text("ul.cases")
        page = tech.open(f"/cases/?q={serial}", "cases-search")
        assert "PX-9001" in page.inner_text("ul.cases")

        # --- every main page, for the roles that use it
        pages = {
            "tech": [
                "/board/",
                "/cases/",
                "/cases/new",
                case_path,
                f"/devices/{serial}",
                "/materials/",
                "/catalog/",
                "/account/password",
            ],
            "rad": ["/cases/", case_path, "/catalog/"],
            "presc": ["/cases/", case_path],
            "manager": ["/audit/", "/audit/events", "/catalog/", "/materials/"],
            "auditor": ["/audit/", f"/devices/{serial}"],
            "admin": ["/admin/users"],
        }
        part_id = re.search(r"part-(\d+)", tech.open(case_path).content()).group(1)
        pages["tech"].append(f"/parts/{part_id}")
        for username, paths in pages.items():
            for path in paths:
                people[username].open(path, "page" + path.replace("/", "-"))
    problems = "\n".join(PAGE_PROBLEMS)
    assert not PAGE_PROBLEMS, f"pages failing axe-core, tap-target or overflow checks:\n{problems}"
