"""Helpers for the fleet tests: printers with their own validated combinations, and build
jobs brought through every clinical gate by the real services (case, signed appropriateness
review, upload, analysis and repair, signed segmentation, signed design approval)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import trimesh
from sqlmodel import select

from pocprint.domain.roles import Role
from pocprint.services import cases as case_service
from pocprint.services import materials
from pocprint.services.actors import Actor
from pocprint.services.fleet import sync_printers
from pocprint.services.lab import build_lab
from pocprint.services.mesh_processing import process_part
from pocprint.services.parts import confirm_units
from pocprint.services.review import review_case, sign_segmentation
from pocprint.services.users import authenticate, create_user
from pocprint.store.db import read_session
from pocprint.store.models import BuildJob, Part, Printer

from conftest import PASSWORD, ROLE_USERS, USUAL_SCENARIO, make_settings, order_fields

PLA_250 = "generic-fff-250x210_pla"
PETG_250 = "generic-fff-250x210_petg"
PLA_180 = "generic-fff-180x180_pla"


def write_combinations(path: Path, *entries: dict) -> Path:
    """A validated.toml with these [[combination]] entries."""
    lines = []
    for entry in entries:
        lines.append("[[combination]]")
        for key, value in entry.items():
            if isinstance(value, list):
                lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
            else:
                lines.append(f'{key} = "{value}"')
        lines.append("")
    path.write_text("\n".join(lines))
    return path


# Anatomical models on any validated profile; surgical guides only in PETG.
ROUTING = (
    {"profile": PLA_250, "material": "PLA", "device_types": ["anatomical_model"]},
    {
        "profile": PETG_250,
        "material": "PETG",
        "device_types": ["anatomical_model", "surgical_guide"],
    },
    {"profile": PLA_180, "material": "PLA", "device_types": ["anatomical_model"]},
)


def fleet_lab(tmp_path, database_url, printers_dir: Path, combinations=ROUTING, **settings):
    """A lab on a migrated database with these printers and combinations, the shipped
    appropriateness catalog, one user per role and an in-date material lot on every printer;
    returns (lab, people)."""
    from pocprint.services.catalog import load_shipped
    from pocprint.store.db import upgrade

    combos = write_combinations(tmp_path / "validated.toml", *combinations)
    cfg = make_settings(tmp_path, database_url, printers_dir, combinations_file=combos, **settings)
    upgrade(cfg.database_url)
    lab = build_lab(cfg)
    sync_printers(lab)
    load_shipped(lab)
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    people = {}
    for username, roles in ROLE_USERS.items():
        create_user(
            lab, root, username, f"{username.title()} Tester", PASSWORD, roles, one_time=False
        )
        people[username] = authenticate(lab, username, PASSWORD)
    for name in lab.printers:
        load_material(lab, people["tech"], name)
    return lab, people


def load_material(lab, actor, printer_name: str, lot_number: str | None = None) -> None:
    """Receive an in-date lot of the printer's material and load it (the traceability
    records must show a lot on every printer that takes a job)."""
    printer = printer_named(lab, printer_name)
    lot = materials.receive_lot(
        lab,
        actor,
        material=printer.material,
        manufacturer="Test Filaments",
        lot_number=lot_number or f"L-{printer.id}-{printer.material}",
        expiry=date.today() + timedelta(days=365),
        quantity_g=1000,
    )
    materials.load_lot(lab, actor, printer.id, lot)


def box(tmp_path: Path, extents=(20, 20, 10), name: str = "part") -> Path:
    path = tmp_path / f"{name}-{'x'.join(str(e) for e in extents)}.stl"
    trimesh.creation.box(extents=extents).export(path)
    return path


def cleared_job(
    lab,
    people,
    mesh: Path,
    *,
    device_type: str = "anatomical_model",
    days: int = 5,
    patient_code: str = "PX-0001",
    material: str | None = None,
) -> int:
    """A build job whose case, segmentation and design are approved and signed; the order
    names `material` (default: PETG for guides, as ROUTING validates them, else PLA)."""
    tech, rad = people["tech"], people["rad"]
    extra = {"material": material or ("PETG" if device_type == "surgical_guide" else "PLA")}
    if device_type == "surgical_guide":
        extra |= dict(
            intended_use="intraoperative_guide",
            regulatory_route="custom_made",
            prescriber_name="Dr Prescribing Surgeon",
            prescriber_qualification="Consultant vascular surgeon",
            design_characteristics="Guide with two 2.0 mm sleeves",
        )
    case_id = case_service.create_case(
        lab,
        tech,
        **order_fields(
            patient_code=patient_code,
            device_type=device_type,
            needed_by=date.today() + timedelta(days=days),
            **extra,
        ),
    )
    review_case(lab, rad, case_id, decision="approve", scenario=USUAL_SCENARIO, password=PASSWORD)
    part_id = case_service.upload_part(lab, tech, case_id, "part.stl", mesh)
    assert process_part(lab, part_id)
    with read_session(lab.engine) as s:
        state = s.get(Part, part_id).state
    if state == "awaiting_units":
        confirm_units(lab, tech, part_id, "mm")
        assert process_part(lab, part_id)
    sign_segmentation(lab, rad, part_id, PASSWORD)
    return case_service.approve_design(lab, rad, part_id, PASSWORD)


def job(lab, job_id: int) -> BuildJob:
    with read_session(lab.engine) as s:
        return s.get(BuildJob, job_id)


def printer_named(lab, name: str) -> Printer:
    with read_session(lab.engine) as s:
        return s.exec(select(Printer).where(Printer.name == name)).one()


def stock_printers(settings, username: str = "tech") -> None:
    """For tests that run pocprint as a process: register the printers and load an in-date
    lot of each printer's material (skipped where a lot is already loaded)."""
    from pocprint.services.materials import current_lot

    lab = build_lab(settings)
    try:
        sync_printers(lab)
        actor = authenticate(lab, username, PASSWORD)
        for name in lab.printers:
            printer = printer_named(lab, name)
            with read_session(lab.engine) as s:
                loaded = current_lot(s, printer.id) is not None
            if not loaded:
                load_material(lab, actor, name)
    finally:
        lab.engine.dispose()
