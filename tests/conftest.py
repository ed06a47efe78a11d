"""Shared fixtures: a real database (SQLite, and PostgreSQL when POCPRINT_TEST_DATABASE_URL is
set), a lab wired to it, users of each role, and printer definition files."""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

# Before pocprint is imported: argon2 with its cheapest parameters for the suite's hundreds of
# throw-away accounts (still argon2id through the same code; service processes inherit it).
os.environ.setdefault("POCPRINT_INSECURE_CHEAP_PASSWORD_HASHES_FOR_TESTS", "1")

from pocprint.config import REPO_ROOT, load_settings
from pocprint.domain.roles import Role
from pocprint.services.actors import Actor
from pocprint.services.catalog import load_shipped
from pocprint.services.fleet import sync_printers
from pocprint.services.lab import build_lab
from pocprint.services.users import authenticate, create_user
from pocprint.store.db import upgrade

SHARED_MESHES = REPO_ROOT.parent / "shared" / "data" / "meshes"
TEST_MESHES = REPO_ROOT / "tests" / "data" / "meshes"
PROFILE = "generic-fff-250x210_pla"
PASSWORD = "correct horse battery staple"
NO_POSTGRES = (
    "POCPRINT_TEST_DATABASE_URL is not set; .ci/run sets it to the local PostgreSQL "
    "so the suite also runs there"
)


# Skips that never hide a missing install: the corpus outside a CI checkout, and checks that
# do not apply to one of the two databases. In CI (CI=true) every other skip is a failure,
# so a missing OctoPrint, PrusaSlicer, chromium or PostgreSQL cannot pass unseen.
CORPUS_ABSENT = "../shared/data/meshes"
NOT_APPLICABLE = "not applicable:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") != "true" or not report.skipped:
        return
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    if CORPUS_ABSENT in reason or NOT_APPLICABLE in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, where every real part must be present: {reason}"


def shared_mesh(name: str) -> Path:
    path = SHARED_MESHES / name
    if not path.exists():
        pytest.skip("../shared/data/meshes is not present (it exists in CI, not in a fresh clone)")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a private schema on the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pocprint.db'}"
        return
    base = os.environ.get("POCPRINT_TEST_DATABASE_URL")
    if not base:
        pytest.skip(NO_POSTGRES)
    schema = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


def write_printer(
    directory: Path, name: str, url: str | None, key: str | None = None, **fields
) -> Path:
    """A printer definition file as lab staff would write it (API key in a secret file)."""
    directory.mkdir(parents=True, exist_ok=True)
    values = {
        "name": name,
        "serial": f"SN-{name}",
        "model": "test printer",
        "connector": "octoprint",
        "url": url,
        "api_key_file": f"{name}.key",
        "technology": "material extrusion",
        "build_volume_mm": [250, 210, 210],
        "nozzle_mm": 0.4,
        "material": "PLA",
        "profiles": [PROFILE],
        "calibration_due": "2099-01-01",
    }
    values.update(fields)
    lines = []
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, str) and k != "calibration_due":
            lines.append(f'{k} = "{v}"')
        elif isinstance(v, list):
            inner = ", ".join(f'"{x}"' if isinstance(x, str) else str(x) for x in v)
            lines.append(f"{k} = [{inner}]")
        else:
            lines.append(f"{k} = {v}")
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    if key is not None:
        secrets_dir = directory.parent / "data" / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        (secrets_dir / f"{name}.key").write_text(key)
    return path


def make_settings(tmp_path: Path, database_url: str, printers_dir: Path, **overrides):
    values = dict(
        data_dir=tmp_path / "data",
        database_url=database_url,
        printers_dir=printers_dir,
        profiles_dir=REPO_ROOT / "printers" / "profiles",
        secret_key=secrets.token_hex(16),
        identifiers_key=Fernet.generate_key().decode(),
        testing=True,
        poll_interval_s=0.5,
        mesh_interval_s=0.3,
        slicing_interval_s=0.3,
        dispatch_interval_s=0.3,
    )
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def printers_dir(tmp_path) -> Path:
    """One printer whose address answers nothing (tests that print start a real OctoPrint)."""
    from pocprint.demo.octoprint_server import free_port

    directory = tmp_path / "printers"
    write_printer(directory, "bench-offline", f"http://127.0.0.1:{free_port()}", key="unused-key")
    return directory


@pytest.fixture
def lab(tmp_path, database_url, printers_dir):
    """A lab on a real, migrated database; printers are whatever the test wrote first."""
    settings = make_settings(tmp_path, database_url, printers_dir)
    upgrade(settings.database_url)
    lab = build_lab(settings)
    sync_printers(lab)
    load_shipped(lab)
    yield lab
    lab.engine.dispose()


ROLE_USERS = {
    "admin": {Role.ADMIN},
    "tech": {Role.TECHNICIAN},
    "rad": {Role.RADIOLOGIST},
    "auditor": {Role.AUDITOR},
    "presc": {Role.PRESCRIBER},
    "manager": {Role.LAB_MANAGER},
}

# A scenario shipped in config/appropriateness/ (usually appropriate, no justification needed).
USUAL_SCENARIO = "complex-abdominal-aortic-aneurysm@sig-complexity-2024"


def order_fields(**overrides) -> dict:
    """A complete, valid order for services.cases.create_case (Python dates)."""
    from datetime import date, timedelta

    values = dict(
        patient_code="PX-0001",
        indication="Complex abdominal aortic aneurysm, endograft planning",
        device_type="anatomical_model",
        needed_by=date.today() + timedelta(days=5),
        ordering_clinician="Dr A. Vascular",
        intended_use="surgical_planning",
        diagnostic_use=False,
        # The structure is left empty: "Abdominal aorta" has an expected size in
        # config/anatomy.toml, which would decide the unit of the suite's small test meshes
        # (tests/test_anatomy_units.py covers that).
        anatomy=[
            {
                "region": "Abdomen",
                "subregion": "Vessels",
                "structure": "",
                "laterality": "midline",
            }
        ],
        icd10_code="I71.4",
        modality="CT",
        slice_thickness_mm=1.0,
        regulatory_route="in_house",
        material="PLA",
    )
    values.update(overrides)
    return values


def order_json(**overrides) -> dict:
    """The same order as JSON for POST /api/v1/cases (dates as ISO text)."""
    values = order_fields(**overrides)
    for key in ("needed_by", "procedure_date"):
        if values.get(key) is not None:
            values[key] = values[key].isoformat()
    return values


def order_form(**overrides) -> dict:
    """The same order as the new-case page's form fields."""
    values = order_json(**overrides)
    part = values.pop("anatomy")[0]
    values["diagnostic_use"] = "yes" if values["diagnostic_use"] else "no"
    values["anatomy_code"] = "|".join(
        [part["region"], part["subregion"], part.get("structure", "")]
    )
    values["anatomy_laterality"] = part["laterality"]
    return {k: "" if v is None else str(v) for k, v in values.items()}


@pytest.fixture
def people(lab) -> dict[str, Actor]:
    """One signed-in actor per role (password PASSWORD for all)."""
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    out = {}
    for username, roles in ROLE_USERS.items():
        create_user(
            lab, root, username, f"{username.title()} Tester", PASSWORD, roles, one_time=False
        )
        out[username] = authenticate(lab, username, PASSWORD)
    return out
