"""Helpers shared by the end-to-end, restart and browser tests."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

from pocprint.domain.roles import Role
from pocprint.services.actors import Actor
from pocprint.services.catalog import load_shipped
from pocprint.services.lab import build_lab
from pocprint.services.tokens import create_api_token
from pocprint.services.users import create_user

from conftest import PASSWORD, ROLE_USERS, TEST_MESHES, USUAL_SCENARIO, order_json

# A real defective anatomy mesh (inside-out aorta segment from vmtk's test data, BSD licence;
# see tests/data/meshes/ATTRIBUTION.md): it must be repaired before it can be sliced.
E2E_MESH = TEST_MESHES / "defect_inverted_aorta_vmtk.stl"


def make_people(settings) -> dict[str, str]:
    """Users of every role on the service's database; returns an API token per user."""
    lab = build_lab(settings)
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    tokens = {}
    for username, roles in ROLE_USERS.items():
        create_user(
            lab, root, username, f"{username.title()} Tester", PASSWORD, roles, one_time=False
        )
        tokens[username] = create_api_token(lab, username, "tests")
    load_shipped(lab)  # the appropriateness catalog the reviews pick from
    lab.engine.dispose()
    return tokens


def copy_mesh(source: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, dest_dir / source.name))


def order_and_approve(tech, rad, mesh: Path, patient_code: str = "PX-3001") -> tuple[int, str]:
    """Through the API, every step the clinical gate needs: open a case, review it
    (approve a usually-appropriate catalog scenario, signed), upload, wait for the repair,
    sign the segmentation, approve the design (signed). Returns (job, serial)."""
    from service_process import wait_for

    r = tech.post("/cases", json=order_json(patient_code=patient_code, indication="restart test"))
    assert r.status_code == 201, r.text
    case_id = r.json()["id"]
    review_and_approve_case(rad, case_id)
    with mesh.open("rb") as fh:
        r = tech.post(f"/cases/{case_id}/parts", files={"mesh": (mesh.name, fh)})
    assert r.status_code == 201, r.text
    part_id = r.json()["id"]
    part = wait_for(
        lambda: tech.get(f"/parts/{part_id}").json(),
        lambda p: p["state"] != "queued" and p["state"] != "processing",
        120,
        "repair",
    )
    assert part["verdict"] == "repaired", part
    r = rad.post(f"/parts/{part_id}/segmentation", json={"password": PASSWORD})
    assert r.status_code == 201, r.text
    r = rad.post(f"/parts/{part_id}/approval", json={"password": PASSWORD})
    assert r.status_code == 201, r.text
    return r.json()["job_id"], r.json()["serial"]


def review_and_approve_case(rad, case_id: int) -> None:
    """The radiologist approves the case's appropriateness (signed) through the API."""
    r = rad.post(
        f"/cases/{case_id}/review",
        json={"decision": "approve", "scenario": USUAL_SCENARIO, "password": PASSWORD},
    )
    assert r.status_code == 201, r.text


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Debian's chromium as root on a closed network: no sandbox, no GPU, no background traffic.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def launch_chromium(playwright, *extra: str):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra]
    )


TABLET = {"width": 820, "height": 1180}  # the lab's tablet viewport, portrait


@contextmanager
def chromium(*extra: str):
    """Debian's chromium under Playwright; skips, saying why, where either is missing."""
    import pytest

    playwright_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p, *extra)
        try:
            yield browser
        finally:
            browser.close()


def fill_order_form(page, patient_code: str, indication: str, device_type: str) -> None:
    """Fill the new-case page as a technician would, with every required field."""
    from datetime import date, timedelta

    page.fill("input[name=patient_code]", patient_code)
    page.fill("input[name=ordering_clinician]", "Dr A. Vascular")
    page.fill("textarea[name=indication]", indication)
    page.check("input[value=surgical_planning]")
    page.check("input[name=diagnostic_use][value=no]")
    page.check(f"input[value={device_type}]")
    page.check("input[name=material][value=PLA]")
    # No structure: a sized one (config/anatomy.toml) would decide the unit of a test box.
    page.select_option("select[name=anatomy_code] >> nth=0", "Abdomen|Vessels|")
    page.select_option("select[name=anatomy_laterality] >> nth=0", "midline")
    page.fill("input[name=needed_by]", (date.today() + timedelta(days=3)).isoformat())
