"""The hospital integration as people see it, in a real browser against pocprint running as
its own process (with its own worker): the order form looks the study up in a real Orthanc
and shows the PACS data with its source; the service's worker sends the radiologists' e-mail
to a real SMTP server; the admin's outbox page lists it. Each page passes axe-core, the tap
target and overflow checks at the tablet viewport."""

from __future__ import annotations

import re
import time

import pytest

from pocprint.config import REPO_ROOT
from pocprint.store.db import upgrade

from a11y import assert_page_ok
from conftest import PASSWORD, make_settings
from peer_servers import OrthancServer, SmtpServer, make_ct_study
from service_process import ServiceProcess
from spine_helpers import TABLET, chromium, fill_order_form, make_people

pytestmark = [pytest.mark.browser]


@pytest.fixture
def peers(tmp_path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    smtp = SmtpServer().start()
    try:
        study = make_ct_study(tmp_path / "ct", patient_name="Browser^Berta", patient_id="MRN-31337")
        for path in study.files:
            orthanc.upload(path)
        yield orthanc, smtp, study
    finally:
        smtp.stop()
        orthanc.stop()


@pytest.fixture
def service(tmp_path, printers_dir, peers):
    orthanc, smtp, _study = peers
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'pocprint.db'}", printers_dir)
    upgrade(settings.database_url)
    make_people(settings)
    config = tmp_path / "site.toml"
    config.write_text(
        (REPO_ROOT / "tests" / "data" / "fast-worker.toml").read_text()
        + "outbox_interval_s = 0.5\n\n"
        + "[pacs]\n"
        + f'host = "127.0.0.1"\nport = {orthanc.dicom_port}\n'
        + f'called_ae = "{orthanc.aet}"\ncalling_ae = "{orthanc.client_aet}"\n\n'
        + "[notifications.email]\n"
        + f'host = "127.0.0.1"\nport = {smtp.port}\nsender = "pocprint@hospital.test"\n\n'
        + "[notifications.roles.radiologist]\n"
        + 'events = ["awaiting_review"]\nemail = ["radiology-3d@hospital.test"]\n'
    )
    process = ServiceProcess(settings, tmp_path / "service.log")
    process.extra_env["POCPRINT_CONFIG"] = str(config)
    process.extra_env["POCPRINT_IDENTIFIERS_KEY"] = settings.identifiers_key
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _sign_in(page, url, username):
    page.goto(f"{url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


def test_order_form_shows_pacs_data_with_its_source_and_the_worker_sends_the_email(service, peers):
    orthanc, smtp, study = peers
    with chromium() as browser:
        page = browser.new_context(viewport=TABLET, has_touch=True).new_page()
        _sign_in(page, service.url, "tech")
        page.goto(f"{service.url}/cases/new")
        fill_order_form(page, "PX-9901", "Aortic aneurysm, endograft planning", "anatomical_model")
        page.fill("input[name=accession_number]", study.accession)
        page.click("button[value=lookup]")
        found = page.locator(".pacs-found")
        assert found.is_visible()
        assert f"From PACS TESTPACS at 127.0.0.1:{orthanc.dicom_port}" in found.inner_text()
        assert "Arterial 1 mm" in found.inner_text()
        assert page.input_value("input[name=slice_thickness_mm]") == "1.0"
        assert page.input_value("select[name=modality]") == "CT"
        assert page.input_value("input[name=identifier_record_number]") == "MRN-31337"
        assert page.input_value("input[name=patient_code]") == "PX-9901"  # typed, kept
        assert_page_ok(page, "order-form-pacs-lookup")
        # Enter in a field saves the order (the look-up is not the form's default button).
        page.press("input[name=patient_code]", "Enter")
        page.wait_for_url(re.compile(r".*/cases/\d+$"))
        assert "From PACS TESTPACS" in page.locator(".imaging-source").inner_text()
        assert "patient PX-9901" in page.locator("h1").inner_text()
        assert_page_ok(page, "case-with-pacs-study")
        # The service's own worker sends the radiologists' e-mail afterwards.
        deadline = time.monotonic() + 30
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.2)
        (mail,) = smtp.messages
        assert mail["to"] == ["radiology-3d@hospital.test"]
        assert "PX-9901" in mail["data"]
        assert "Berta" not in mail["data"] and "31337" not in mail["data"]
        admin = browser.new_context(viewport=TABLET, has_touch=True).new_page()
        _sign_in(admin, service.url, "admin")
        admin.goto(f"{service.url}/admin/outbox/")
        assert "radiology-3d@hospital.test" in admin.locator("table.outbox").inner_text()
        assert "sent" in admin.locator("tr.outbox-sent").first.inner_text()
        assert_page_ok(admin, "admin-outbox")
