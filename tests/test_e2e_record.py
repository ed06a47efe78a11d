"""End to end on real parts (pocprint as a process, a real OctoPrint virtual printer, the real
PrusaSlicer, a real database): an order goes through every gate, is printed from a loaded
lot on a calibrated printer, post-processed, measured, released and delivered, and its device
history record holds every field the traceability issue lists."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest

from pocprint.services import maintenance, postprocessing, release
from pocprint.services.lab import build_lab
from pocprint.services.users import authenticate
from pocprint.slicing.prusaslicer import slicer_binary
from pocprint.store.db import upgrade
from pocprint.store.models import utcnow

from conftest import PASSWORD, make_settings, write_printer
from fleet_helpers import load_material, printer_named
from octoprint_fixtures import octoprint_or_skip, running_octoprint
from service_process import Api, ServiceProcess, wait_for
from spine_helpers import E2E_MESH, copy_mesh, make_people, order_and_approve

pytestmark = [pytest.mark.octoprint, pytest.mark.slicer]
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def printer(tmp_path):
    octoprint_or_skip()
    slicer_binary()
    with running_octoprint(tmp_path / "octoprint") as server:
        yield server


def present(record: dict, path: str):
    """The value at a dotted path; fails naming the path when it is missing or empty."""
    value = record
    for key in path.split("."):
        assert isinstance(value, dict) and key in value, f"{path}: no {key!r}"
        value = value[key]
    assert value not in (None, "", [], {}), f"{path} is empty"
    return value


def test_record_of_a_printed_released_device_is_complete(tmp_path, database_url, printer):
    printers_dir = tmp_path / "printers"
    write_printer(printers_dir, "bench-a", printer.url, key=printer.api_key)
    settings = make_settings(tmp_path, database_url, printers_dir)
    upgrade(settings.database_url)
    tokens = make_people(settings)
    service = ServiceProcess(settings, tmp_path / "service.log").start()
    lab = build_lab(settings)  # the test's own hands on the same database, for the lab's steps
    try:
        tech_api, rad_api = Api(service.url, tokens["tech"]), Api(service.url, tokens["rad"])
        tech = authenticate(lab, "tech", PASSWORD)
        manager = authenticate(lab, "manager", PASSWORD)
        load_material(lab, tech, "bench-a", lot_number="LOT-E2E-1")
        maintenance.record_entry(
            lab,
            tech,
            printer_named(lab, "bench-a").id,
            kind="calibration",
            description="first layer, e-steps, bed mesh",
            result="passed",
            performed_at=utcnow() - timedelta(hours=2),
            next_due=date.today() + timedelta(days=30),
        )
        job_id, serial = order_and_approve(
            tech_api, rad_api, copy_mesh(E2E_MESH, tmp_path / "in"), patient_code="PX-7001"
        )
        wait_for(
            lambda: tech_api.get(f"/jobs/{job_id}").json()["state"],
            lambda s: s in ("ready", "slice_failed"),
            240,
            "slicing",
        )
        printer_id = wait_for(
            lambda: tech_api.get("/printers").json(),
            lambda ps: ps and ps[0]["state"] == "idle",
            30,
            "printer idle",
        )[0]["id"]
        assert tech_api.post(f"/printers/{printer_id}/plate-clear").status_code == 204
        job = wait_for(
            lambda: tech_api.get(f"/jobs/{job_id}").json(),
            lambda j: j["state"] in ("printed", "failed", "interrupted", "cancelled"),
            300,
            "print end",
        )
        assert job["state"] == "printed", job
        r = tech_api.post(f"/jobs/{job_id}/outcome", json={"outcome": "accepted", "note": ""})
        assert r.status_code == 204, r.text

        postprocessing.record_step(lab, tech, job_id, "support_removal", {"method": "manual"})
        postprocessing.record_step(lab, tech, job_id, "visual_check", {"finding": "no defects"})
        postprocessing.record_measurement(
            lab, tech, job_id, feature="aortic neck diameter", designed_mm=22.0,
            measured_mm=22.3, tolerance_mm=1.0,
        )  # fmt: skip
        release.release_device(lab, manager, job_id, PASSWORD, "fit for planning")
        release.record_delivery(lab, tech, job_id, delivered_to="Dr Vascular", location="OR 2")

        record = tech_api.get(f"/devices/{serial}").json()
        # Identity
        assert present(record, "device.serial") == serial
        for path in ("device.case", "device.device_type", "device.design_version"):
            present(record, path)
        assert present(record, "device.patient_code") == "PX-7001"
        # The order and every signature
        for path in (
            "order.indication",
            "order.icd10_code",
            "order.intended_use",
            "order.anatomy",
            "order.ordering_clinician",
            "order.regulatory_route",
            "order.needed_by",
        ):
            present(record, path)
        meanings = {s["meaning"] for s in present(record, "signatures")}
        assert {
            "reviewed appropriateness",
            "approved segmentation",
            "approved design",
            "released device",
        } <= meanings
        # Files with their SHA-256
        for path in ("files.source.sha256", "files.repaired_mesh.sha256", "files.gcode.sha256"):
            assert SHA256.match(present(record, path)), path
        # Repair and fidelity report
        present(record, "repair.report")
        present(record, "repair.fidelity")
        # Slicer
        assert present(record, "slicing.slicer") == "PrusaSlicer"
        assert present(record, "slicing.version").startswith("2.")
        assert SHA256.match(present(record, "slicing.profile_sha256"))
        assert len(present(record, "slicing.effective_config")) > 50
        # Printer, material and lot
        assert present(record, "printer.serial") == "SN-bench-a"
        assert present(record, "printer.connector") == "octoprint"
        assert present(record, "printer.calibration_at_build.state") == "current"
        assert present(record, "material.material") == "PLA"
        assert present(record, "material.lot.lot_number") == "LOT-E2E-1"
        assert present(record, "material.consumed_g") > 0
        # Operator for each step
        operators = present(record, "operators")
        for step in (
            "order",
            "upload",
            "design approval",
            "plate clear",
            "print outcome",
            "post-processing",
            "QA",
            "release",
            "delivery",
        ):
            assert operators.get(step), f"no operator for {step}: {operators}"
        assert operators["release"] == ["Manager Tester"]
        # Start, end and printer events
        present(record, "print.started_at")
        present(record, "print.finished_at")
        assert {"printing"} <= {
            e["after"]["state"] for e in present(record, "print.printer_events")
        }
        actions = [e["action"] for e in present(record, "events")]
        assert "job.started" in actions and "job.printed" in actions
        # Post-processing, QA, release, delivery
        steps = {s["step"]: s for s in present(record, "post_processing.steps")}
        assert steps["support_removal"]["parameters"] == {"method": "manual"}
        assert steps["visual_check"]["operator"]["username"] == "tech"
        m = present(record, "qa.measurements")[0]
        assert (m["designed_mm"], m["measured_mm"], m["tolerance_mm"], m["passed"]) == (
            22.0,
            22.3,
            1.0,
            True,
        )
        assert present(record, "release.state") == "valid"
        assert present(record, "release.signer") == "Manager Tester"
        assert present(record, "delivery.delivered_to") == "Dr Vascular"
        assert present(record, "delivery.delivered_at")
        assert record["quantities"] == {"built": 1, "accepted": 1, "released": 1}
    except BaseException:
        print(service.log_tail(80))
        raise
    finally:
        lab.engine.dispose()
        service.stop()
