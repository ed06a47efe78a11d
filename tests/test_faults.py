"""Fault injection: the service is SIGKILLed at every named kill point of the lab flow, one
after another, on a real OctoPrint with its virtual printer, the real PrusaSlicer and the
database under test, and restarted each time. Afterwards: no job lost, none sent twice,
no half-written record, and the audit chain still verifies.

Each run also writes its figures to var/test-artifacts/faults/<database>.json; `make
bench-faults` collects them into bench/results/faults.json.
"""

from __future__ import annotations

import json
import os

import pytest
import requests
import trimesh
from fault_harness import FaultRun, findings

from pocprint.config import REPO_ROOT
from pocprint.faults import POINTS
from pocprint.store.db import upgrade

from conftest import make_settings, write_printer
from fleet_helpers import stock_printers
from octoprint_fixtures import octoprint_or_skip, running_octoprint
from spine_helpers import make_people

pytestmark = [pytest.mark.octoprint, pytest.mark.slicer]

# In the order the flow reaches them (see tests/fault_harness.py for what follows each).
CHAIN = [
    "signature.before_commit",  # the review's signature
    "blob.temp_written",  # the upload, before its file is renamed into place
    "upload.blob_stored",  # the upload again, file stored, row not committed
    "part.claimed",
    "sweep.found",  # the start-up sweep that hands the cut-off part on
    "part.repaired_stored",
    "part.recorded",
    "approval.committed",
    "job.slice_claimed",
    "job.slicer_running",
    "job.gcode_stored",
    "job.sliced",
    "plate_clear.before_commit",
    "dispatch.claimed",  # nothing reached the printer: the job waits again
    "dispatch.send_claimed",  # likewise, after a sender took the job over
    "dispatch.uploaded",  # the file is on the printer: interrupted, reprinted
    "dispatch.verified",  # likewise
    "dispatch.recorded",
    "cancel.sent",  # the printer stopped, pocprint had not recorded it
    "poll.read",
    "poll.applied",
    "dispatch.start_sent",  # the printer runs the file: followed, never re-sent
    "outcome.before_commit",
    "release.before_commit",
]


def octo_files(server) -> dict[str, dict]:
    files = requests.get(
        f"{server.url}/api/files?recursive=true",
        headers={"X-Api-Key": server.api_key},
        timeout=10,
    ).json()["files"]
    return {f["name"]: f for f in files}


def test_every_kill_point_is_in_the_chain():
    assert sorted(CHAIN) == sorted(POINTS)


def test_killed_at_every_point_nothing_is_lost_sent_twice_or_half_written(tmp_path, database_url):
    octoprint_or_skip()
    with running_octoprint(tmp_path / "octoprint") as printer:
        printers_dir = tmp_path / "printers"
        write_printer(printers_dir, "bench-a", printer.url, key=printer.api_key)
        settings = make_settings(tmp_path, database_url, printers_dir)
        upgrade(settings.database_url)
        tokens = make_people(settings)
        stock_printers(settings)
        mesh = tmp_path / "model.stl"
        trimesh.creation.box(extents=(40, 40, 8)).export(mesh)
        run = FaultRun(settings, tokens, mesh, tmp_path, list(CHAIN))
        try:
            run.run()
        except BaseException:
            print(run.service.log_tail(80))
            raise
        finally:
            run.stop()
        found = findings(run.lab, octo_files(printer))
        figures = {
            "database": run.lab.engine.dialect.name,
            "kill_points_tried": len(run.kills),
            "kill_points": run.kills,
            "restarts": run.restarts,
            "build_jobs": found.jobs,
            "jobs_lost": len(found.jobs_lost),
            "jobs_sent_twice": len(found.sent_twice),
            "half_written_records": len(found.half_written),
            "audit_chain_verifies": found.chain_ok,
        }
        out = REPO_ROOT / "var" / "test-artifacts" / "faults"
        out = type(out)(os.environ.get("POCPRINT_FAULT_FIGURES", out))
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{figures['database']}.json").write_text(json.dumps(figures, indent=2))
        trail = "\n".join(run.trail[-60:])
        assert run.kills == CHAIN, f"not every point fired; the driver's trail:\n{trail}"
        assert found.jobs_lost == [] and found.sent_twice == [] and found.half_written == []
        assert found.chain_ok, found.chain_detail
