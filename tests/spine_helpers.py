"""Helpers shared by the end-to-end, restart and browser tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from pocprint.domain.roles import Role
from pocprint.services.actors import Actor
from pocprint.services.lab import build_lab
from pocprint.services.users import create_api_token, create_user

from conftest import PASSWORD, ROLE_USERS, TEST_MESHES

# A real defective anatomy mesh (inside-out aorta segment from vmtk's test data, BSD licence;
# see tests/data/meshes/ATTRIBUTION.md): it must be repaired before it can be sliced.
E2E_MESH = TEST_MESHES / "defect_inverted_aorta_vmtk.stl"


def make_people(settings) -> dict[str, str]:
    """Users of every role on the service's database; returns an API token per user."""
    lab = build_lab(settings)
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    tokens = {}
    for username, roles in ROLE_USERS.items():
        create_user(lab, root, username, f"{username.title()} Tester", PASSWORD, roles)
        tokens[username] = create_api_token(lab, username, "tests")
    lab.engine.dispose()
    return tokens


def copy_mesh(source: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(source, dest_dir / source.name))


def order_and_approve(tech, rad, mesh: Path, patient_code: str = "PX-3001") -> tuple[int, str]:
    """Through the API: open a case, upload, wait for the repair, approve. Returns (job, serial)."""
    from datetime import date, timedelta

    from service_process import wait_for

    r = tech.post(
        "/cases",
        json={
            "patient_code": patient_code,
            "indication": "restart test",
            "device_type": "anatomical_model",
            "needed_by": (date.today() + timedelta(days=2)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    with mesh.open("rb") as fh:
        r = tech.post(f"/cases/{r.json()['id']}/parts", files={"mesh": (mesh.name, fh)})
    assert r.status_code == 201, r.text
    part_id = r.json()["id"]
    part = wait_for(
        lambda: tech.get(f"/parts/{part_id}").json(),
        lambda p: p["state"] != "queued" and p["state"] != "processing",
        120,
        "repair",
    )
    assert part["verdict"] == "repaired", part
    r = rad.post(f"/parts/{part_id}/approval", json={"password": PASSWORD})
    assert r.status_code == 201, r.text
    return r.json()["job_id"], r.json()["serial"]


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
