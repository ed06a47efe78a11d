"""Scale-out on Celery with real parts: a web process on the Celery engine and two `pocprint
worker` processes (separate OS processes) on PostgreSQL and a private redis-server, cases
through repair, slicing and dispatch to two real OctoPrint virtual printers. Then the ways a
cluster breaks: a worker SIGKILLed mid-slice, the dispatcher lock holder killed, Redis
restarted with its queues lost. Nothing may be lost, nothing sent twice, and the audit chain
must verify. SQLite is the single-machine layout: these tests say so and skip there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
import trimesh
from scale_helpers import WorkerProcess, celery_web, postgres_only, running_redis
from sqlmodel import select

from pocprint.reads.audit import verify_chain
from pocprint.services.lab import build_lab
from pocprint.store.db import read_session, upgrade
from pocprint.store.models import AuditEvent, BuildJob, LeaderChange, WorkerHeartbeat

from conftest import PASSWORD, make_settings, order_json, write_printer
from fleet_helpers import stock_printers
from octoprint_fixtures import octoprint_or_skip, running_octoprint
from service_process import Api, wait_for
from spine_helpers import E2E_MESH, make_people, review_and_approve_case

pytestmark = [pytest.mark.octoprint, pytest.mark.slicer]

# The issue asks for 20 cases; 6 by default keeps the file near four minutes on two cores
# (POCPRINT_SCALE_CASES=20 runs the full count).
CASES = int(os.environ.get("POCPRINT_SCALE_CASES", "6"))


class Cluster:
    def __init__(self, tmp_path, database_url, printer_urls, broker_url):
        printers_dir = tmp_path / "printers"
        for i, (url, key) in enumerate(printer_urls):
            write_printer(printers_dir, f"bench-{'ab'[i]}", url, key=key)
        self.settings = make_settings(
            tmp_path, database_url, printers_dir, worker_engine="celery", broker_url=broker_url
        )
        upgrade(self.settings.database_url)
        self.tokens = make_people(self.settings)
        stock_printers(self.settings)
        self.tmp, self.broker_url = tmp_path, broker_url
        self.web = celery_web(self.settings, tmp_path / "web.log", broker_url)
        self.workers: list[WorkerProcess] = []

    def start(self, workers: int = 2) -> Cluster:
        self.web.start()
        for _ in range(workers):
            self.add_worker()
        self.tech = Api(self.web.url, self.tokens["tech"])
        self.rad = Api(self.web.url, self.tokens["rad"])
        return self

    def add_worker(self, queues: str = "", **env) -> WorkerProcess:
        n = len(self.workers)
        worker = WorkerProcess(self.settings, self.tmp / f"worker-{n}.log", self.broker_url, queues)
        worker.extra_env.update(env)
        self.workers.append(worker.start())
        return worker

    def stop(self) -> None:
        for process in [*self.workers, self.web]:
            process.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.log_path.name}\n{p.log_tail(40)}" for p in [self.web, *self.workers]
        )

    def query(self, fn):
        lab = build_lab(self.settings)
        try:
            with read_session(lab.engine) as session:
                return fn(session)
        finally:
            lab.engine.dispose()

    def order(self, mesh, n: int) -> list[int]:
        """Open, review and upload n cases; returns their part ids."""
        parts = []
        for i in range(n):
            r = self.tech.post("/cases", json=order_json(patient_code=f"PX-{4000 + i}"))
            assert r.status_code == 201, r.text
            review_and_approve_case(self.rad, r.json()["id"])
            with mesh.open("rb") as fh:
                r = self.tech.post(
                    f"/cases/{r.json()['id']}/parts", files={"mesh": (mesh.name, fh)}
                )
            assert r.status_code == 201, r.text
            parts.append(r.json()["id"])
        return parts

    def approve(self, part_ids: list[int], timeout: float) -> list[int]:
        """Wait for each repair, then sign the segmentation and the design; returns job ids."""
        jobs = []
        for part_id in part_ids:
            part = wait_for(
                lambda pid=part_id: self.tech.get(f"/parts/{pid}").json(),
                lambda p: p["state"] not in ("queued", "processing"),
                timeout,
                f"repair of part {part_id}",
            )
            assert part["verdict"] == "repaired", part
            r = self.rad.post(f"/parts/{part_id}/segmentation", json={"password": PASSWORD})
            assert r.status_code == 201, r.text
            r = self.rad.post(f"/parts/{part_id}/approval", json={"password": PASSWORD})
            assert r.status_code == 201, r.text
            jobs.append(r.json()["job_id"])
        return jobs

    def print_all(self, job_ids: list[int], timeout: float) -> None:
        """Confirm plates clear on idle printers until every job is printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {j: self.tech.get(f"/jobs/{j}").json()["state"] for j in job_ids}
            if all(s == "printed" for s in states.values()):
                return
            assert not {"interrupted", "slice_failed", "failed"} & set(states.values()), states
            busy = {
                self.tech.get(f"/jobs/{j}").json().get("printer_id")
                for j, s in states.items()
                if s in ("dispatching", "printing", "paused")
            }
            for printer in self.tech.get("/printers").json():
                free = printer["state"] == "idle" and printer["id"] not in busy
                if free and not printer["plate_clear"]:
                    self.tech.post(f"/printers/{printer['id']}/plate-clear")
            time.sleep(0.5)
        raise AssertionError(f"not all printed in {timeout} s: {states}")


def lease_pids(session, action: str) -> set[int]:
    """Which processes held the leases of the steps recorded under `action`."""
    pids = set()
    for after in session.exec(select(AuditEvent.after).where(AuditEvent.action == action)):
        lease = (after or {}).get("lease") or ""
        parts = lease.split(":")
        if len(parts) >= 2 and parts[1].isdigit():
            pids.add(int(parts[1]))
    return pids


@pytest.fixture
def cluster_parts(tmp_path, database_url):
    postgres_only(database_url)
    octoprint_or_skip()
    with (
        running_octoprint(tmp_path / "octo-a") as a,
        running_octoprint(tmp_path / "octo-b") as b,
        running_redis(tmp_path / "redis") as broker,
    ):
        yield [(a.url, a.api_key), (b.url, b.api_key)], broker, (a, b)


def test_cases_flow_through_two_workers_to_two_printers_none_sent_twice(
    tmp_path, database_url, cluster_parts
):
    printer_urls, broker, octoprints = cluster_parts
    cluster = Cluster(tmp_path, database_url, printer_urls, broker.url).start(workers=2)
    try:
        jobs = cluster.approve(cluster.order(E2E_MESH, CASES), timeout=300)
        cluster.print_all(jobs, timeout=120 + 60 * CASES)

        def facts(session):
            serials = [session.get(BuildJob, j).serial for j in jobs]
            started = {
                s: session.exec(
                    select(AuditEvent.id).where(
                        AuditEvent.entity_id == s, AuditEvent.action == "job.started"
                    )
                ).all()
                for s in serials
            }
            workers = session.exec(select(WorkerHeartbeat)).all()
            return (
                serials,
                started,
                lease_pids(session, "part.processing") | lease_pids(session, "job.slicing"),
                workers,
            )

        serials, started, step_pids, heartbeats = cluster.query(facts)
        assert all(len(ids) == 1 for ids in started.values()), started  # none sent twice
        worker_pids = {w.pid for w in cluster.workers}
        assert step_pids <= worker_pids and len(step_pids) == 2, (step_pids, worker_pids)
        assert {h.pid for h in heartbeats} == worker_pids
        assert sum(h.dispatcher for h in heartbeats) == 1
        printed = {}
        for server in octoprints:
            files = requests.get(
                f"{server.url}/api/files?recursive=true",
                headers={"X-Api-Key": server.api_key},
                timeout=10,
            ).json()["files"]
            for f in files:
                printed[f["name"]] = printed.get(f["name"], 0) + f["prints"]["success"]
        assert printed == {f"{s}.gcode": 1 for s in serials}  # each printed once, on one printer
        lab = build_lab(cluster.settings)
        assert verify_chain(lab.engine).ok
        lab.engine.dispose()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def job_state(cluster, job_id: int) -> str:
    return cluster.tech.get(f"/jobs/{job_id}").json()["state"]


def actions_of(cluster, serial: str) -> list[str]:
    return cluster.query(
        lambda s: list(
            s.exec(
                select(AuditEvent.action)
                .where(AuditEvent.entity_id == serial)
                .order_by(AuditEvent.id)
            ).all()
        )
    )


def test_worker_killed_mid_slice_the_other_worker_slices_it(tmp_path, database_url, cluster_parts):
    printer_urls, broker, _octoprints = cluster_parts
    big = tmp_path / "sphere.stl"  # slicing takes seconds, so the kill lands inside it
    trimesh.creation.icosphere(subdivisions=6, radius=45).export(big)
    cluster = Cluster(tmp_path, database_url, printer_urls, broker.url).start(workers=2)
    try:
        (job_id,) = cluster.approve(cluster.order(big, 1), timeout=300)
        wait_for(lambda: job_state(cluster, job_id), lambda s: s == "slicing", 120, "slicing", 0.05)
        holder = cluster.query(lambda s: s.get(BuildJob, job_id).lease_owner)
        victim = next(w for w in cluster.workers if holder.split(":")[1] == str(w.pid))
        victim.kill()
        survivor = next(w for w in cluster.workers if w is not victim)
        wait_for(lambda: job_state(cluster, job_id), lambda s: s == "ready", 180, "re-slice")
        serial = cluster.query(lambda s: s.get(BuildJob, job_id).serial)
        actions = actions_of(cluster, serial)
        assert "job.lease_expired" in actions and actions.count("job.sliced") == 1
        slicers = cluster.query(lambda s: lease_pids(s, "job.slicing"))
        assert slicers == {victim.pid, survivor.pid}  # claimed by the one, finished by the other
        printer_id = cluster.tech.get("/printers").json()[0]["id"]  # a big print: seen started
        assert cluster.tech.post(f"/printers/{printer_id}/plate-clear").status_code == 204
        wait_for(lambda: job_state(cluster, job_id), lambda s: s == "printing", 60, "printing")
        assert actions_of(cluster, serial).count("job.started") == 1
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def test_worker_killed_mid_dispatch_the_job_is_sent_once_by_the_other(
    tmp_path, database_url, cluster_parts
):
    printer_urls, broker, octoprints = cluster_parts
    cluster = Cluster(tmp_path, database_url, printer_urls, broker.url)
    cluster.web.start()
    marker = tmp_path / "killed-at"
    # The first worker takes the dispatcher lock and dies once it has taken a send over.
    doomed = cluster.add_worker(
        POCPRINT_KILL_AT="dispatch.send_claimed", POCPRINT_KILL_MARKER=str(marker)
    )
    wait_for(
        lambda: cluster.query(lambda s: s.exec(select(LeaderChange.holder)).all()),
        lambda holders: len(holders) == 1,
        30,
        "a dispatcher",
    )
    other = cluster.add_worker()
    cluster.tech = Api(cluster.web.url, cluster.tokens["tech"])
    cluster.rad = Api(cluster.web.url, cluster.tokens["rad"])
    try:
        (job_id,) = cluster.approve(cluster.order(E2E_MESH, 1), timeout=300)
        wait_for(lambda: job_state(cluster, job_id), lambda s: s == "ready", 120, "slicing")
        os.killpg(other.pid, signal.SIGSTOP)  # so the doomed worker takes the send
        try:
            printer_id = cluster.tech.get("/printers").json()[0]["id"]
            assert cluster.tech.post(f"/printers/{printer_id}/plate-clear").status_code == 204
            wait_for(lambda: doomed.process.poll(), lambda rc: rc is not None, 60, "the kill")
        finally:
            os.killpg(other.pid, signal.SIGCONT)
        assert marker.read_text().split() == ["dispatch.send_claimed"]
        cluster.print_all([job_id], timeout=180)
        serial = cluster.query(lambda s: s.get(BuildJob, job_id).serial)
        actions = actions_of(cluster, serial)
        assert actions.count("job.started") == 1 and "job.lease_expired" in actions
        senders = cluster.query(lambda s: lease_pids(s, "job.send_claimed"))
        assert senders == {doomed.pid, other.pid}
        prints = sum(
            f["prints"]["success"] + f["prints"]["failure"]
            for server in octoprints
            for f in requests.get(
                f"{server.url}/api/files?recursive=true",
                headers={"X-Api-Key": server.api_key},
                timeout=10,
            ).json()["files"]
        )
        assert prints == 1
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def test_dispatcher_lock_holder_killed_another_takes_over_within_seconds(
    tmp_path, database_url, cluster_parts
):
    printer_urls, broker, _octoprints = cluster_parts
    cluster = Cluster(tmp_path, database_url, printer_urls, broker.url).start(workers=2)
    try:
        holder = wait_for(
            lambda: cluster.query(
                lambda s: s.exec(select(WorkerHeartbeat).where(WorkerHeartbeat.dispatcher)).all()
            ),
            lambda rows: len(rows) == 1,
            30,
            "one dispatcher",
        )[0]
        victim = next(w for w in cluster.workers if w.pid == holder.pid)
        survivor = next(w for w in cluster.workers if w is not victim)
        killed_at = time.monotonic()
        victim.kill()
        change = wait_for(
            lambda: cluster.query(
                lambda s: s.exec(select(LeaderChange).order_by(LeaderChange.id.desc())).first()
            ),
            lambda c: c.previous == holder.name,
            30,
            "takeover",
            0.1,
        )
        assert time.monotonic() - killed_at < 10
        assert change.holder.endswith(f":{survivor.pid}")
        # The new dispatcher plans and sends: a case goes all the way through.
        (job_id,) = cluster.approve(cluster.order(E2E_MESH, 1), timeout=300)
        cluster.print_all([job_id], timeout=240)
        report = subprocess.run(
            [sys.executable, "-m", "pocprint.cli", "status", "--json"],
            env=cluster.web.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        status = json.loads(report.stdout)
        assert status["alive"] == 1 and status["dispatcher_takeovers"] == 1
        assert set(status["queues"]) == {"mesh", "slicing", "printers"}
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()


def test_redis_restarted_with_queued_messages_lost_nothing_is_lost(
    tmp_path, database_url, cluster_parts
):
    printer_urls, broker, _octoprints = cluster_parts
    cluster = Cluster(tmp_path, database_url, printer_urls, broker.url).start(workers=2)
    try:
        for worker in cluster.workers:  # nobody takes the messages off the queue
            worker.stop()
        parts = cluster.order(E2E_MESH, 2)
        assert broker.llen("mesh") == 2
        broker.stop()  # no persistence: both messages are gone
        broker.start()
        assert broker.llen("mesh") == 0
        cluster.workers = []
        for _ in range(2):
            cluster.add_worker()
        jobs = cluster.approve(parts, timeout=300)  # the dispatcher's rescan enqueues again
        for job_id in jobs:
            wait_for(lambda j=job_id: job_state(cluster, j), lambda s: s == "ready", 180, "ready")
        # With the broker down the web still takes orders (the enqueue gives up quickly).
        broker.stop()
        try:
            started = time.monotonic()
            (part_id,) = cluster.order(E2E_MESH, 1)
            assert time.monotonic() - started < 15
        finally:
            broker.start()
        (job_id,) = cluster.approve([part_id], timeout=300)
        wait_for(lambda: job_state(cluster, job_id), lambda s: s == "ready", 180, "ready")
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
