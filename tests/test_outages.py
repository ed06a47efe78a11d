"""Outages of the things pocprint stands on (issue 10's fault list beyond the kill points):
PrusaSlicer killed mid-slice, the file store's disk full, the database unreachable for a
while. Each uses the real part: the real slicer process is SIGKILLed; the store sits on a
real, tiny tmpfs that really fills up (in a private mount namespace of the service process);
the real PostgreSQL is reached through a TCP relay the test can cut and restore. Each time
the service says so clearly, keeps nothing half-written, and carries on afterwards.

(The printer side — OctoPrint killed mid-print and started again — is in
tests/test_fleet_dispatch.py; the service killed at every step is tests/test_faults.py.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import trimesh
from sqlmodel import select

from pocprint.domain.states import JobState, PartState
from pocprint.services import slicing
from pocprint.services.lab import build_lab
from pocprint.store.blobs import TEMP_PREFIX
from pocprint.store.db import read_session, upgrade
from pocprint.store.models import AuditEvent, BuildJob, Case, Part

from conftest import NOT_APPLICABLE, PASSWORD, USUAL_SCENARIO, make_settings, order_json
from fleet_helpers import cleared_job, fleet_lab
from service_process import Api, ServiceProcess, wait_for
from spine_helpers import make_people

# ------------------------------------------------------------- PrusaSlicer killed mid-slice


def _slicer_children() -> list[int]:
    """PIDs of PrusaSlicer processes slicing a part for this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        slicing_a_part = "prusa-slicer" in cmdline and "--export-gcode" in cmdline
        if slicing_a_part and _descends_from(int(entry.name), os.getpid()):
            found.append(int(entry.name))
    return found


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == ancestor:
            return True
    return False


@pytest.mark.slicer
def test_prusaslicer_killed_mid_slice_is_retried_then_sliced(tmp_path, database_url, printers_dir):
    lab, people = fleet_lab(tmp_path, database_url, printers_dir, retry_base_s=0.2)
    # A part that keeps PrusaSlicer busy for a few seconds: time to find and kill it.
    sphere = tmp_path / "sphere.stl"
    trimesh.creation.icosphere(subdivisions=6, radius=45).export(sphere)
    job_id = cleared_job(lab, people, sphere)
    killed: list[int] = []

    def kill_the_slicer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in _slicer_children():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_slicer)
    killer.start()
    assert slicing.slice_job(lab, job_id)
    killer.join()
    assert killed, "PrusaSlicer was never seen running"
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        # Transient: queued again with a back-off and the reason, nothing recorded as sliced.
        assert job.state == JobState.SLICE_QUEUED
        assert job.gcode_sha256 is None and job.retry_at is not None
        assert "SIGKILL" in job.error and "trying again" in job.error
        retry = s.exec(
            select(AuditEvent).where(
                AuditEvent.entity_id == job.serial, AuditEvent.action == "job.retry"
            )
        ).one()
        assert "SIGKILL" in retry.reason
    assert not list(lab.blobs.root.glob(f"{TEMP_PREFIX}*"))
    # The next tick after the back-off slices it for real.
    time.sleep(0.3)
    assert slicing.slice_waiting_jobs(lab) == 1
    with read_session(lab.engine) as s:
        job = s.get(BuildJob, job_id)
        assert job.state == JobState.READY
        assert lab.blobs.verify(job.gcode_sha256)
    lab.engine.dispose()


# ------------------------------------------------------------- the file store's disk is full


def _unshare_or_skip() -> str:
    binary = shutil.which("unshare")
    probe = subprocess.run(
        [binary or "unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"a private mount namespace is needed for a real full disk: {probe.stderr}")
    return binary


def test_a_full_file_store_refuses_the_upload_clearly_and_keeps_nothing(tmp_path, database_url):
    unshare = _unshare_or_skip()
    printers = tmp_path / "printers"
    printers.mkdir()
    settings = make_settings(tmp_path, database_url, printers)
    upgrade(settings.database_url)
    tokens = make_people(settings)
    blobs = settings.blob_dir
    blobs.mkdir(parents=True, exist_ok=True)
    service = ServiceProcess(settings, tmp_path / "service.log")
    # The store is a 512 KiB tmpfs, seen only by the service process.
    service.command_prefix = [
        unshare,
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'mount -t tmpfs -o size=512k pocprint-test-store "{blobs}" && exec "$@"',
        "sh",
    ]
    big, small = tmp_path / "big.stl", tmp_path / "small.stl"
    trimesh.creation.icosphere(subdivisions=5, radius=30).export(big)  # ~1 MB binary STL
    trimesh.creation.box(extents=(30, 20, 10)).export(small)
    assert big.stat().st_size > 600 * 1024
    service.start()
    try:
        api = {name: Api(service.url, token) for name, token in tokens.items()}
        case = api["tech"].post("/cases", json=order_json(patient_code="PX-0507"))
        assert case.status_code == 201, case.text
        case_id = case.json()["id"]
        review = {"decision": "approve", "scenario": USUAL_SCENARIO, "password": PASSWORD}
        assert api["rad"].post(f"/cases/{case_id}/review", json=review).status_code == 201

        with big.open("rb") as fh:
            r = api["tech"].post(f"/cases/{case_id}/parts", files={"mesh": ("big.stl", fh)})
        assert r.status_code == 507, r.text
        assert r.json()["code"] == "store_full"
        assert "file store is full" in r.json()["message"]
        # Nothing half-written: no part row, no file and no temporary file in the store (read
        # through the service's own view of its mounts).
        lab = build_lab(settings)
        with read_session(lab.engine) as s:
            assert s.exec(select(Part)).all() == []
        store = Path(f"/proc/{service.process.pid}/root") / str(blobs).lstrip("/")
        assert [p.name for p in store.rglob("*") if p.is_file()] == []

        # The service carries on: a part that fits is stored and analysed.
        with small.open("rb") as fh:
            r = api["tech"].post(f"/cases/{case_id}/parts", files={"mesh": ("small.stl", fh)})
        assert r.status_code == 201, r.text
        part_id = r.json()["id"]
        wait_for(
            lambda: api["tech"].get(f"/parts/{part_id}").json()["state"],
            lambda state: state in (PartState.PROCESSED, PartState.AWAITING_UNITS),
            60,
            "the part that fits to be analysed",
        )
        lab.engine.dispose()
    finally:
        service.stop()


# --------------------------------------------------- the database unreachable for a while


class Relay:
    """A TCP relay to the real PostgreSQL that the test can cut (every connection dropped,
    new ones refused) and restore: the network between pocprint and its database failing."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.links: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self):
        self.open.clear()
        with self.lock:
            for s in self.links:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.links.clear()

    def restore(self):
        self.open.set()

    def close(self):
        self.cut()
        self.listener.close()


def test_database_unreachable_for_a_while_says_so_and_recovers(tmp_path, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip(
            f"{NOT_APPLICABLE} the embedded SQLite file sits on the service's own disk; "
            "a database across the network is PostgreSQL's case"
        )
    import sqlalchemy as sa

    url = sa.engine.make_url(database_url)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    printers = tmp_path / "printers"
    printers.mkdir()
    settings = make_settings(tmp_path, database_url, printers)
    upgrade(settings.database_url)
    tokens = make_people(settings)
    service = ServiceProcess(settings.with_(database_url=relayed), tmp_path / "service.log")
    service.start()
    lab = build_lab(settings)
    try:
        api = Api(service.url, tokens["tech"])
        r = api.post("/cases", json=order_json(patient_code="PX-0503"))
        assert r.status_code == 201, r.text

        relay.cut()
        # Pages and the API say the database is not answering; nothing sent is stored.
        r = api.post("/cases", json=order_json(patient_code="PX-0504"))
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "database_unavailable"
        assert r.headers["Retry-After"]
        page = requests.get(f"{service.url}/login", timeout=30)
        assert page.status_code in (200, 503)  # the sign-in page needs no database
        time.sleep(2)  # the worker's ticks fail meanwhile: logged once, not per tick
        assert service.process.poll() is None, service.log_tail()

        relay.restore()
        r = wait_for(
            lambda: api.post("/cases", json=order_json(patient_code="PX-0505")),
            lambda resp: resp.status_code == 201,
            30,
            "the service to reach its database again",
        )
        with read_session(lab.engine) as s:
            codes = sorted(c.patient_code for c in s.exec(select(Case)).all())
        assert codes == ["PX-0503", "PX-0505"]  # the order sent during the outage: not stored
        log = service.log_path.read_text(errors="replace")
        assert "database unreachable" in log
        assert log.count("worker step mesh failed") <= 1
    finally:
        service.stop()
        relay.close()
        lab.engine.dispose()
