"""Scale-out figures on the Celery engine, with real processes on PostgreSQL and Redis:

- cases per hour through repair and slicing with 1 and then 2 `pocprint worker` processes in
  the same run (target: at least 1.7x with 2 on a 2-core machine), twice: with the workers
  free to use both cores (PrusaSlicer slices on every core it may use, so one worker already
  keeps more than one core busy) and with each worker held to a core of its own
  (`taskset`), as if each were a one-core machine; the clock runs from the first repair
  claimed to the last job sliced (audit times), so the driver's order entry is not counted,
  and the machine's busy cores during each run are recorded;
- the latency Celery adds per step against the embedded engine: from the commit that made a
  step due to the claim that starts it, one case at a time so no queue waits are counted
  (target: under 50 ms median);
- the time until another worker holds the dispatcher lock after its holder was SIGKILLed
  (target: under 10 s).

Needs POCPRINT_TEST_DATABASE_URL (a private schema is made and dropped), redis-server and
PrusaSlicer. Reuses the test suite's process helpers (tests/scale_helpers.py). Writes
bench/results/scale.json. `python -m bench.scale [--cases N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
import trimesh
from sqlmodel import select

from pocprint.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests"))

from scale_helpers import WorkerProcess, celery_web, running_redis  # noqa: E402

from pocprint.services.lab import build_lab  # noqa: E402
from pocprint.store.db import read_session, upgrade  # noqa: E402
from pocprint.store.models import AuditEvent, LeaderChange, WorkerHeartbeat  # noqa: E402

from conftest import PASSWORD, make_settings, order_json, write_printer  # noqa: E402
from fleet_helpers import stock_printers  # noqa: E402
from service_process import Api, ServiceProcess, wait_for  # noqa: E402
from spine_helpers import E2E_MESH, make_people, review_and_approve_case  # noqa: E402

OUT = REPO_ROOT / "bench" / "results" / "scale.json"
# Step latency: the event that made the step due, and the claim that started it.
STEP_EVENTS = {
    "process_part": ("part.uploaded", "part.processing"),
    "slice_job": ("job.created", "job.slicing"),
}


class Schema:
    """A private schema on the benchmark's PostgreSQL, dropped afterwards."""

    def __init__(self, base: str):
        self.base, self.name = base, "b_" + uuid.uuid4().hex[:12]
        self.admin = sa.create_engine(base)
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
        sep = "&" if "?" in base else "?"
        self.url = f"{base}{sep}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{self.name}" CASCADE')
        self.admin.dispose()


class Lab:
    """One database, the web process and the workers of one measurement."""

    def __init__(self, workdir: Path, base_url: str, broker_url: str, engine: str):
        self.schema = Schema(base_url)
        printers_dir = workdir / "printers"
        write_printer(printers_dir, "bench-a", "http://127.0.0.1:9", key="unused")
        self.settings = make_settings(workdir, self.schema.url, printers_dir)
        upgrade(self.settings.database_url)
        self.tokens = make_people(self.settings)
        stock_printers(self.settings)
        self.workdir, self.broker_url = workdir, broker_url
        if engine == "celery":
            self.web = celery_web(self.settings, workdir / "web.log", broker_url)
        else:
            self.web = ServiceProcess(self.settings, workdir / "web.log")
        self.workers: list[WorkerProcess] = []

    def start(self, workers: int, pinned: bool = False) -> Lab:
        self.web.start()
        for _ in range(workers):
            self.add_worker(pinned)
        self.tech = Api(self.web.url, self.tokens["tech"])
        self.rad = Api(self.web.url, self.tokens["rad"])
        return self

    def add_worker(self, pinned: bool = False) -> WorkerProcess:
        """A worker process; pinned, it and every process it starts (the mesh child,
        PrusaSlicer) run on one core, a different one for each worker."""
        n = len(self.workers)
        worker = WorkerProcess(self.settings, self.workdir / f"worker-{n}.log", self.broker_url)
        if pinned:
            worker.command_prefix = ["taskset", "--cpu-list", str(n % os.cpu_count())]
        worker.start()
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for process in [*self.workers, self.web]:
            process.stop()
        self.schema.drop()

    def query(self, fn):
        lab = build_lab(self.settings)
        try:
            with read_session(lab.engine) as session:
                return fn(session)
        finally:
            lab.engine.dispose()

    def order(self, n: int, offset: int = 0, mesh: Path = E2E_MESH) -> list[int]:
        parts = []
        for i in range(n):
            r = self.tech.post("/cases", json=order_json(patient_code=f"PX-{5000 + offset + i}"))
            review_and_approve_case(self.rad, r.json()["id"])
            with mesh.open("rb") as fh:
                r = self.tech.post(
                    f"/cases/{r.json()['id']}/parts", files={"mesh": (mesh.name, fh)}
                )
            parts.append(r.json()["id"])
        return parts

    def through_slicing(self, parts: list[int], timeout: float = 1200) -> None:
        """Approve each part as soon as it is repaired; return when every job is ready."""
        waiting, jobs = list(parts), []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for part_id in list(waiting):
                part = self.tech.get(f"/parts/{part_id}").json()
                if part["state"] in ("queued", "processing"):
                    continue
                if part["state"] == "awaiting_units":  # the technician confirms millimetres
                    self.tech.post(f"/parts/{part_id}/units", json={"units": "mm"})
                    continue
                if part["verdict"] != "repaired":
                    raise RuntimeError(f"part {part_id}: {part}")
                self.rad.post(f"/parts/{part_id}/segmentation", json={"password": PASSWORD})
                r = self.rad.post(f"/parts/{part_id}/approval", json={"password": PASSWORD})
                jobs.append(r.json()["job_id"])
                waiting.remove(part_id)
            for job_id in list(jobs):  # a job once ready is not asked again
                state = self.tech.get(f"/jobs/{job_id}").json()["state"]
                if state == "slice_failed":
                    raise RuntimeError(f"slicing failed: job {job_id}")
                if state == "ready":
                    jobs.remove(job_id)
            if not waiting and not jobs:
                return
            time.sleep(1.0)  # a technician's pace; each ask is work for the web process
        raise TimeoutError("cases not through slicing in time")

    def latencies(self) -> dict[str, list[float]]:
        def fetch(session):
            rows = session.exec(
                select(AuditEvent.action, AuditEvent.entity_id, AuditEvent.at).order_by(
                    AuditEvent.id
                )
            ).all()
            out = {}
            for step, (due_action, claim_action) in STEP_EVENTS.items():
                due = {e: t for a, e, t in rows if a == due_action}
                claims = {}
                for a, e, t in rows:
                    if a == claim_action and e in due and e not in claims:
                        claims[e] = t
                out[step] = [(claims[e] - due[e]).total_seconds() * 1000 for e in claims]
            return out

        return self.query(fetch)

    def working_span(self) -> float:
        """Seconds from the first repair claimed to the last job sliced (audit times)."""

        def fetch(session):
            times = {}
            for action in ("part.processing", "job.sliced"):
                times[action] = session.exec(
                    select(AuditEvent.at).where(AuditEvent.action == action)
                ).all()
            return (max(times["job.sliced"]) - min(times["part.processing"])).total_seconds()

        return self.query(fetch)


def heavy_part(workdir: Path) -> Path:
    """An 81,920-triangle sphere: repair and slicing take seconds each, as real parts do, so
    the figure measures the workers rather than the test driver."""
    path = workdir / "sphere-81920.stl"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        trimesh.creation.icosphere(subdivisions=6, radius=30).export(path)
    return path


def busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def throughput(
    workdir: Path, base: str, broker: str, workers: int, cases: int, pinned: bool
) -> dict:
    lab = Lab(workdir, base, broker, "celery").start(workers, pinned)
    try:
        busy0, total0 = busy_jiffies()
        lab.through_slicing(lab.order(cases, mesh=heavy_part(workdir.parent / "meshes")))
        busy1, total1 = busy_jiffies()
        seconds = lab.working_span()
    finally:
        lab.stop()
    return {
        "workers": workers,
        "pinned": pinned,
        "cases": cases,
        "seconds": round(seconds, 1),
        "cases_per_hour": round(cases / seconds * 3600, 1),
        "machine_busy_cores": round((busy1 - busy0) / (total1 - total0) * os.cpu_count(), 2),
    }


def speedups(base: str, broker: str, tmp: Path, cases: int) -> dict:
    """1 then 2 workers, free and pinned, each pair in the same run."""
    out = {}
    for pinned in (False, True):
        kind = "pinned" if pinned else "free"
        figures = [
            _shown(
                f"{n} worker(s), {kind}",
                throughput(tmp / f"{n}-{kind}", base, broker, n, cases, pinned),
            )
            for n in (1, 2)
        ]
        speedup = round(figures[1]["cases_per_hour"] / figures[0]["cases_per_hour"], 2)
        out[kind] = {"one_worker": figures[0], "two_workers": figures[1], "speedup": speedup}
    return out


def step_latency(workdir: Path, base: str, broker: str, engine: str, cases: int) -> dict:
    lab = Lab(workdir, base, broker, engine).start(2 if engine == "celery" else 0)
    try:
        for i in range(cases):  # one at a time: nothing waits behind another case
            lab.through_slicing(lab.order(1, offset=i))
        figures = lab.latencies()
    finally:
        lab.stop()
    return {
        step: {"median_ms": round(statistics.median(ms), 1), "samples": [round(m, 1) for m in ms]}
        for step, ms in figures.items()
    }


def takeover(workdir: Path, base: str, broker: str, trials: int) -> list[float]:
    lab = Lab(workdir, base, broker, "celery").start(2)
    times = []
    try:
        for _ in range(trials):
            holder = wait_for(
                lambda: lab.query(
                    lambda s: s.exec(
                        select(WorkerHeartbeat).where(WorkerHeartbeat.dispatcher)
                    ).all()
                ),
                lambda rows: len(rows) == 1,
                60,
                "one dispatcher",
                interval=0.1,
            )[0]
            victim = next(w for w in lab.workers if w.pid == holder.pid)
            killed = time.monotonic()
            victim.kill()
            wait_for(
                lambda: lab.query(
                    lambda s: s.exec(select(LeaderChange).order_by(LeaderChange.id.desc())).first()
                ),
                lambda c, name=holder.name: c is not None and c.previous == name,
                60,
                "another worker to take the dispatcher over",
                interval=0.02,
            )
            times.append(round(time.monotonic() - killed, 2))
            lab.workers.remove(victim)
            lab.add_worker()
            time.sleep(6)  # the old holder's heartbeat row ages out of "dispatcher"
    finally:
        lab.stop()
    return times


def _shown(what: str, figures):
    print(f"{what}: {json.dumps(figures)}", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--latency-cases", type=int, default=5)
    parser.add_argument("--takeovers", type=int, default=3)
    args = parser.parse_args()
    base = os.environ.get("POCPRINT_TEST_DATABASE_URL")
    if not base:
        print("POCPRINT_TEST_DATABASE_URL must name a PostgreSQL database", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pocprint-scale-") as tmp:
        tmp = Path(tmp)
        with running_redis(tmp / "redis") as broker:
            scaling = speedups(base, broker.url, tmp, args.cases)
            embedded = _shown(
                "embedded",
                step_latency(tmp / "emb", base, broker.url, "embedded", args.latency_cases),
            )
            celery = _shown(
                "celery", step_latency(tmp / "cel", base, broker.url, "celery", args.latency_cases)
            )
            takeovers = _shown("takeover", takeover(tmp / "take", base, broker.url, args.takeovers))
    added = {
        step: round(celery[step]["median_ms"] - embedded[step]["median_ms"], 1) for step in celery
    }
    result = {
        "benchmark": "scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "meshes": {
            "throughput": "icosphere, 81,920 triangles, radius 30 mm",
            "latency": E2E_MESH.name,
        },
        "throughput": {
            "clock": "first part.processing to last job.sliced in the audit trail",
            "cores_free": scaling["free"],
            "core_per_worker": scaling["pinned"],
        },
        "step_latency_ms": {"embedded": embedded, "celery": celery, "added_by_celery": added},
        "dispatcher_takeover_s": {
            "samples": takeovers,
            "median": round(statistics.median(takeovers), 2),
        },
        "targets": {
            "speedup_at_least": 1.7,
            "added_latency_median_under_ms": 50,
            "takeover_under_s": 10,
        },
        "met": {
            "speedup_cores_free": scaling["free"]["speedup"] >= 1.7,
            "speedup_core_per_worker": scaling["pinned"]["speedup"] >= 1.7,
            "latency": all(v < 50 for v in added.values()),
            "takeover": max(takeovers) < 10,
        },
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
