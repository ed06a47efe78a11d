"""Fleet benchmark, part 2: from a technician's "plate clear" to the job printing on OctoPrint.

A real OctoPrint with its virtual printer; pocprint as its own process (`pocprint serve`)
with the site's default worker intervals (config/pocprint.toml: dispatch every 1 s, poll
every 2 s), so the figure includes the worker's wake-up and not a shortened tick. First the
real services bring several orders of a real anatomy mesh through the clinical gate (the
fleet tests' cleared_job: signed review, repair, segmentation sign-off, design approval),
an in-date material lot is loaded, and the service slices them. Each run then: wait until
pocprint shows the printer idle; start the clock; POST /api/v1/printers/<id>/plate-clear as
the technician; stop the clock at the first /api/job answer from OctoPrint itself that shows
the job's file "Printing" (checked every 20 ms); cancel the print through pocprint with a
reason and record the build as rejected, so the printer is free for the next run.
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from sqlmodel import select

from bench.fleet import PLATE_CLEAR_TARGET_S, PROFILE, private_database, summary
from pocprint.config import REPO_ROOT
from pocprint.demo.octoprint_server import start_server
from pocprint.services.tokens import create_api_token
from pocprint.slicing.prusaslicer import slicer_version
from pocprint.store.db import make_engine, read_session
from pocprint.store.models import AuditEvent, BuildJob

sys.path.insert(0, str(REPO_ROOT / "tests"))  # the end-to-end tests' helpers

from conftest import write_printer  # noqa: E402
from fleet_helpers import PLA_250, cleared_job, fleet_lab  # noqa: E402
from service_process import Api, ServiceProcess, wait_for  # noqa: E402
from spine_helpers import E2E_MESH, copy_mesh  # noqa: E402

OBSERVE_EVERY_S = 0.02
SITE_CONFIG = REPO_ROOT / "config" / "pocprint.toml"


class SiteDefaultsService(ServiceProcess):
    """`pocprint serve` with the site's default worker intervals, not the tests' fast ones."""

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "POCPRINT_CONFIG": str(SITE_CONFIG),
            "POCPRINT_VALIDATED_FILE": str(self.settings.combinations_file),
        }


def _octoprint_job(session: requests.Session, url: str) -> dict:
    return session.get(f"{url}/api/job", timeout=5).json()


def _printing_file(job: dict) -> str | None:
    if job.get("state") != "Printing":
        return None
    return ((job.get("job") or {}).get("file") or {}).get("path")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def one_database(label: str, base_url: str | None, octo, runs: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True)
    with private_database(base_url, workdir) as database_url:
        printers_dir = workdir / "printers"
        write_printer(printers_dir, "bench-octoprint", octo.url, key=octo.api_key)
        # The real services bring each job through the clinical gate (signed review,
        # segmentation and design approval) and put an in-date PLA lot on the printer.
        combinations = (
            {"profile": PLA_250, "material": "PLA", "device_types": ["anatomical_model"]},
        )
        lab, people = fleet_lab(workdir, database_url, printers_dir, combinations)
        mesh = copy_mesh(E2E_MESH, workdir / "meshes")
        job_ids = [
            cleared_job(lab, people, mesh, patient_code=f"BENCH-{i + 1:02d}") for i in range(runs)
        ]
        token = create_api_token(lab, "tech", "fleet benchmark")
        settings = lab.settings
        lab.engine.dispose()
        service = SiteDefaultsService(settings, workdir / "service.log").start()
        octo_http = requests.Session()
        octo_http.headers["X-Api-Key"] = octo.api_key
        try:
            tech = Api(service.url, token)
            jobs = {}
            for job_id in job_ids:
                job = wait_for(
                    lambda j=job_id: tech.get(f"/jobs/{j}").json(),
                    lambda j: j["state"] not in ("slice_queued", "slicing"),
                    600,
                    "slicing",
                )
                if job["state"] != "ready":
                    raise RuntimeError(f"job {job_id} was not sliced: {job.get('error')}")
                jobs[f"{job['serial']}.gcode"] = (job_id, job["serial"])
            samples = []
            for _ in range(runs):
                samples.append(_one_run(tech, octo_http, octo.url, jobs))
        except BaseException:
            print(f"pocprint's log ends with:\n{service.log_tail()}", file=sys.stderr)
            raise
        finally:
            octo_http.close()
            service.stop()
        engine = make_engine(database_url)
        with read_session(engine) as session:
            events = session.exec(
                select(AuditEvent).where(AuditEvent.action.in_(["job.dispatching", "job.started"]))
            ).all()
            sizes = {j.serial: j.gcode_bytes for j in session.exec(select(BuildJob)).all()}
        engine.dispose()
    at = {(e.entity_id, e.action): _aware(e.at).timestamp() for e in events}
    for sample in samples:
        sample["gcode_bytes"] = sizes.get(sample["serial"])
        t0 = sample.pop("_wall_t0")
        for action in ("job.dispatching", "job.started"):
            moment = at.get((sample["serial"], action))
            key = action.split(".")[1] + "_recorded_after_s"
            sample[key] = round(moment - t0, 4) if moment else None
    return {
        "database": label,
        "samples": samples,
        "summary": summary(
            [s["plate_clear_to_printing_s"] for s in samples], PLATE_CLEAR_TARGET_S, "max"
        ),
    }


def _one_run(tech: Api, octo_http: requests.Session, octo_url: str, jobs: dict) -> dict:
    printer = wait_for(
        lambda: tech.get("/printers").json()[0],
        lambda p: p["state"] == "idle" and not p.get("job") and not p["plate_clear"],
        120,
        "the printer idle in pocprint",
        interval=0.1,
    )
    wall_t0 = time.time()
    t0 = time.perf_counter()
    response = tech.post(f"/printers/{printer['id']}/plate-clear")
    answered = time.perf_counter() - t0
    if response.status_code != 204:
        raise RuntimeError(f"plate clear refused: {response.status_code} {response.text}")
    deadline = t0 + 60
    while True:
        now = time.perf_counter()
        remote = _printing_file(_octoprint_job(octo_http, octo_url))
        if remote is not None:
            elapsed = time.perf_counter() - t0
            break
        if now > deadline:
            states = {s: tech.get(f"/jobs/{j}").json()["state"] for j, s in jobs.values()}
            raise RuntimeError(
                "OctoPrint did not start a job within 60 s of the plate clear; pocprint shows "
                f"the printer {tech.get('/printers').json()[0]} and the jobs {states}"
            )
        time.sleep(OBSERVE_EVERY_S)
    if remote not in jobs:
        raise RuntimeError(f"OctoPrint is printing {remote}, which is none of the bench jobs")
    job_id, serial = jobs[remote]
    wait_for(
        lambda: tech.get(f"/jobs/{job_id}").json()["state"],
        lambda s: s == "printing",
        60,
        "pocprint to record the job printing",
        interval=0.05,
    )
    r = tech.post(f"/jobs/{job_id}/cancel", json={"reason": "fleet benchmark run finished"})
    if r.status_code != 204:
        raise RuntimeError(f"cancel refused: {r.status_code} {r.text}")
    wait_for(
        lambda: _octoprint_job(octo_http, octo_url).get("state"),
        lambda s: s == "Operational",
        60,
        "OctoPrint idle after the cancel",
        interval=0.1,
    )
    # The technician takes the part off and records it before the plate can be cleared again.
    note = "fleet benchmark: print cancelled on purpose after it started"
    r = tech.post(f"/jobs/{job_id}/outcome", json={"outcome": "rejected", "note": note})
    if r.status_code != 204:
        raise RuntimeError(f"outcome refused: {r.status_code} {r.text}")
    print(f"  plate clear -> {serial} printing on OctoPrint: {elapsed:.3f} s", flush=True)
    return {
        "serial": serial,
        "plate_clear_to_printing_s": round(elapsed, 4),
        "plate_clear_request_s": round(answered, 4),
        "_wall_t0": wall_t0,
    }


def plate_clear_runs(runs: int, workdir: Path, databases: list[tuple[str, str | None]]) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    octo = start_server(workdir / "octoprint")
    try:
        version = requests.get(
            f"{octo.url}/api/version", headers={"X-Api-Key": octo.api_key}, timeout=5
        ).json()
        out_runs = []
        for label, url in databases:
            print(f"plate clear to started, {label}: {runs} jobs", flush=True)
            out_runs.append(one_database(label, url, octo, runs, workdir / label))
    finally:
        with contextlib.suppress(Exception):
            octo.stop()
    return {
        "method": __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
        "octoprint": version.get("server"),
        "prusaslicer": slicer_version(),
        "mesh": E2E_MESH.name,
        "profile": PROFILE,
        "observation_interval_s": OBSERVE_EVERY_S,
        "runs": out_runs,
    }
