"""Auditor searches and recall queries on a seeded history of builds: by material lot, by
printer and dates, by slicer profile hash, by operator; CSV export; the registry export."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from sqlmodel import select

from pocprint.demo.octoprint_server import free_port
from pocprint.domain.roles import Role
from pocprint.reads.auditor import DeviceFilter, EventFilter, search_devices, search_events, to_csv
from pocprint.reads.registry import registry_export, registry_rows
from pocprint.services import materials, postprocessing
from pocprint.services.actors import Actor
from pocprint.services.users import authenticate, create_user
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Printer, utcnow

from conftest import PASSWORD, write_printer
from trace_helpers import printed_device

TODAY = date.today()


@pytest.fixture
def printers_dir(tmp_path):
    directory = tmp_path / "printers"
    for name in ("bench-a", "bench-b"):
        write_printer(directory, name, f"http://127.0.0.1:{free_port()}", key="unused-key")
    return directory


def _printer(lab, name) -> int:
    with read_session(lab.engine) as s:
        return s.exec(select(Printer).where(Printer.name == name)).one().id


def _lot(lab, tech, number) -> int:
    return materials.receive_lot(
        lab,
        tech,
        material="PLA",
        manufacturer="Acme",
        lot_number=number,
        expiry=TODAY + timedelta(days=100),
        quantity_g=1000,
    )


@pytest.fixture
def history(lab, people, tmp_path):
    """Four builds: lot L-1 on bench-a (two builds), L-2 on bench-b, then L-3 on bench-a."""
    tech = people["tech"]
    lots = {n: _lot(lab, tech, n) for n in ("L-1", "L-2", "L-3")}
    materials.load_lot(lab, tech, _printer(lab, "bench-a"), lots["L-1"])
    materials.load_lot(lab, tech, _printer(lab, "bench-b"), lots["L-2"])
    a, b = "a" * 64, "b" * 64
    jobs = {
        "first": printed_device(lab, people, tmp_path, printer="bench-a", profile_sha256=a),
        "on_b": printed_device(lab, people, tmp_path, printer="bench-b", profile_sha256=b),
        "second": printed_device(lab, people, tmp_path, printer="bench-a", profile_sha256=b),
    }
    materials.load_lot(lab, tech, _printer(lab, "bench-a"), lots["L-3"])
    jobs["after_change"] = printed_device(
        lab, people, tmp_path, printer="bench-a", profile_sha256=a
    )
    with read_session(lab.engine) as s:
        return {k: s.get(BuildJob, v).serial for k, v in jobs.items()}


def serials(lab, **filters) -> set[str]:
    with read_session(lab.engine) as s:
        return {row["serial"] for row in search_devices(s, DeviceFilter(**filters))}


def test_every_device_built_with_a_lot(lab, history):
    assert serials(lab, lot="L-1") == {history["first"], history["second"]}
    assert serials(lab, lot="L-2") == {history["on_b"]}
    assert serials(lab, lot="L-3") == {history["after_change"]}
    assert serials(lab, lot="L-404") == set()


def test_devices_with_a_profile_hash_and_on_a_printer(lab, history):
    assert serials(lab, profile="b" * 64) == {history["on_b"], history["second"]}
    assert serials(lab, profile="bbbbbbbb") == {history["on_b"], history["second"]}
    assert serials(lab, printer="bench-b") == {history["on_b"]}
    assert serials(lab, printer="SN-bench-a", lot="L-1") == {history["first"], history["second"]}


def test_devices_on_a_printer_between_dates(lab, history):
    with unit_of_work(lab.engine) as s:
        job = s.exec(select(BuildJob).where(BuildJob.serial == history["on_b"])).one()
        job.started_at = utcnow() - timedelta(days=5)
    week = dict(printer="bench-b", date_from=TODAY - timedelta(days=6))
    assert serials(lab, **week, date_to=TODAY - timedelta(days=4)) == {history["on_b"]}
    assert serials(lab, **week, date_to=TODAY - timedelta(days=6)) == set()
    assert serials(lab, printer="bench-b", date_from=TODAY - timedelta(days=3)) == set()
    assert len(serials(lab, date_from=TODAY, date_to=TODAY)) == 3


def test_devices_an_operator_touched(lab, people, history):
    root = Actor(None, "test-setup", "test setup", frozenset({Role.ADMIN}))
    create_user(lab, root, "tech2", "Second Tech", PASSWORD, {Role.TECHNICIAN}, one_time=False)
    tech2 = authenticate(lab, "tech2", PASSWORD)
    with read_session(lab.engine) as s:
        job_id = s.exec(select(BuildJob.id).where(BuildJob.serial == history["second"])).one()
    postprocessing.record_step(lab, tech2, job_id, "support_removal", {"method": "manual"})
    assert serials(lab, operator="tech2") == {history["second"]}
    assert serials(lab, operator="rad") == set(history.values())  # approved every design
    with read_session(lab.engine) as s:
        events = search_events(s, EventFilter(actor="tech2", action="post."))
    assert [e["action"] for e in events] == ["post.step"]


def test_csv_export_has_one_row_per_device(lab, history):
    with read_session(lab.engine) as s:
        rows = search_devices(s, DeviceFilter(lot="L-1"))
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert sorted(r["serial"] for r in parsed) == sorted([history["first"], history["second"]])
    assert {r["lot"] for r in parsed} == {"L-1"} and parsed[0]["printer"] == "bench-a"
    assert "rad" in parsed[0]["operators"].split(";")


def test_registry_export_has_sections_and_effort_from_timestamps(lab, history):
    with read_session(lab.engine) as s:
        job = s.exec(select(BuildJob).where(BuildJob.serial == history["first"])).one()
        export = registry_export(s, job.case_id)
    assert export["digital_model"]["model_or_guide"] == "guide"
    assert export["digital_model"]["anatomic_parts"][0]["structure"] == "Mandible"
    assert export["physical_models"][0]["printer_label"] == "bench-a"
    assert export["effort"]["consultation"]["clinician"]["unknown"] is True
    cad = export["effort"]["cad"]["non_clinician"]
    assert cad["unknown"] is False and cad["hours"] == 0
    assert "PX-2001" not in str(export)  # anonymised: no patient code
    fields = {r["field"] for r in registry_rows(export)}
    assert "effort.cad.non_clinician.minutes" in fields
