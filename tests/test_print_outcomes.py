"""A cancelled or failed print is recorded as such, on a real OctoPrint: cancelled from
pocprint (with a reason), or stopped on the printer itself (recorded as failed)."""

from __future__ import annotations

import pytest
import requests

from pocprint.store.db import upgrade

from conftest import make_settings, write_printer
from fleet_helpers import stock_printers
from octoprint_fixtures import octoprint_or_skip, running_octoprint
from service_process import Api, ServiceProcess, wait_for
from spine_helpers import E2E_MESH, make_people, order_and_approve

pytestmark = [pytest.mark.octoprint, pytest.mark.slicer]


def test_cancelled_and_failed_prints_are_recorded_as_such(tmp_path, database_url):
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octoprint") as printer:
        printers_dir = tmp_path / "printers"
        write_printer(printers_dir, "bench-a", printer.url, key=printer.api_key)
        settings = make_settings(tmp_path, database_url, printers_dir)
        upgrade(settings.database_url)
        tokens = make_people(settings)
        stock_printers(settings)
        service = ServiceProcess(settings, tmp_path / "service.log").start()
        octo = requests.Session()
        octo.headers["X-Api-Key"] = printer.api_key
        try:
            tech, rad = Api(service.url, tokens["tech"]), Api(service.url, tokens["rad"])
            first, _ = order_and_approve(tech, rad, E2E_MESH, "PX-0101")
            second, second_serial = order_and_approve(tech, rad, E2E_MESH, "PX-0102")
            for job in (first, second):
                wait_for(
                    lambda j=job: tech.get(f"/jobs/{j}").json()["state"],
                    lambda s: s == "ready",
                    120,
                    "slicing",
                )
            printer_id = tech.get("/printers").json()[0]["id"]

            def start_next(job_id):
                wait_for(
                    lambda: tech.get("/printers").json()[0]["state"],
                    lambda s: s == "idle",
                    30,
                    "idle",
                )
                assert tech.post(f"/printers/{printer_id}/plate-clear").status_code == 204
                wait_for(
                    lambda: tech.get(f"/jobs/{job_id}").json()["state"],
                    lambda s: s == "printing",
                    30,
                    "start",
                )

            # 1. Cancelled from pocprint: needs a reason, the printer stops, the record says why.
            start_next(first)
            assert tech.post(f"/jobs/{first}/cancel", json={"reason": ""}).status_code == 422
            r = tech.post(f"/jobs/{first}/cancel", json={"reason": "first layer not sticking"})
            assert r.status_code == 204, r.text
            job = tech.get(f"/jobs/{first}").json()
            assert job["state"] == "cancelled"
            wait_for(
                lambda: octo.get(f"{printer.url}/api/job", timeout=5).json()["state"],
                lambda s: s == "Operational",
                30,
                "printer stops",
            )
            record = tech.get(f"/devices/{job['serial']}").json()
            assert record["print"]["cancel_reason"] == "first layer not sticking"
            assert any(
                e["action"] == "job.cancelled" and e["actor"] == "tech" for e in record["events"]
            )
            # The plate holds a cancelled part: the second job waits for a new plate-clear.
            assert tech.get(f"/jobs/{second}").json()["state"] == "ready"

            # 2. Stopped on the printer itself: pocprint records a failed print.
            start_next(second)
            assert (
                octo.post(
                    f"{printer.url}/api/job", json={"command": "cancel"}, timeout=5
                ).status_code
                == 204
            )
            job = wait_for(
                lambda: tech.get(f"/jobs/{second}").json(),
                lambda j: j["state"] != "printing",
                60,
                "failure noticed",
            )
            assert job["state"] == "failed", job
            assert (
                "did not complete" in tech.get(f"/devices/{second_serial}").json()["print"]["error"]
            )

            # Only a completed print can be accepted; a rejection needs a note.
            assert (
                tech.post(f"/jobs/{second}/outcome", json={"outcome": "accepted"}).status_code
                == 409
            )
            assert (
                tech.post(f"/jobs/{second}/outcome", json={"outcome": "rejected"}).status_code
                == 422
            )
            r = tech.post(
                f"/jobs/{second}/outcome",
                json={"outcome": "rejected", "note": "stopped on printer"},
            )
            assert r.status_code == 204
            assert tech.get(f"/jobs/{second}").json()["outcome"] == "rejected"
        except BaseException:
            print(service.log_tail(60))
            raise
        finally:
            service.stop()
