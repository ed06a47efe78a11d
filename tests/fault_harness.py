"""Drives one case through the whole lab flow on a real `pocprint serve` process, a real
OctoPrint and the real PrusaSlicer, while the service is SIGKILLed at named kill points
(pocprint/faults.py), one after another, and restarted each time.

The driver never assumes where it is: each pass reads the record (read-only, straight from
the database) and does the one next thing a lab would do — review, upload, confirm, sign,
clear the plate, resolve an interrupted job, record the outcome, post-process, release,
deliver. A request cut off by a kill is simply looked at again after the restart, as a
technician would look at the tablet again. Every kill is checked: the process died by
SIGKILL at exactly the armed point (the marker file names it).
"""

from __future__ import annotations

import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
from sqlmodel import select

from pocprint.domain.states import AWAITING_OUTCOME, JobState, PartState
from pocprint.faults import KILL_AT, KILL_MARKER
from pocprint.reads.audit import verify_chain
from pocprint.services.lab import build_lab
from pocprint.services.release import RELEASED
from pocprint.store.blobs import TEMP_PREFIX
from pocprint.store.db import read_session
from pocprint.store.models import (
    AuditEvent,
    BuildJob,
    Case,
    Delivery,
    JobSlice,
    Part,
    Printer,
    Signature,
)

from conftest import PASSWORD, USUAL_SCENARIO, order_json
from service_process import Api, ServiceProcess

# A kill can come before the answer or part-way through its body (ChunkedEncodingError).
CUT_OFF = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Kill points that fire only while a print is sent, running or cancelled.
NEED_A_PRINT = {
    "plate_clear.before_commit",
    "dispatch.claimed",
    "dispatch.send_claimed",
    "dispatch.uploaded",
    "dispatch.verified",
    "dispatch.start_sent",
    "dispatch.recorded",
    "cancel.sent",
}
TERMINAL = {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


class FormClient:
    """A signed-in browser session for the pages' forms (CSRF token taken from each page)."""

    def __init__(self, base: str, username: str):
        self.base, self.username = base, username
        self.session = requests.Session()
        self.signed_in = False

    def _token(self, path: str) -> str:
        page = self.session.get(self.base + path, timeout=30)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, f"no CSRF token on {path} ({page.status_code})"
        return found.group(1)

    def sign_in(self) -> None:
        token = self._token("/login")
        r = self.session.post(
            self.base + "/login",
            data={"username": self.username, "password": PASSWORD, "csrf_token": token},
            timeout=30,
        )
        assert r.status_code in (200, 302, 303), r.status_code
        self.signed_in = True

    def post(self, page: str, action: str, data: dict) -> requests.Response:
        if not self.signed_in:
            self.sign_in()
        token = self._token(page)
        r = self.session.post(self.base + action, data={**data, "csrf_token": token}, timeout=60)
        self.last = f"{action} -> {r.status_code} {flash_text(r.text)}"
        return r


def flash_text(page: str) -> str:
    """The messages a page shows after a form post (for a stuck run's message)."""
    found = re.findall(r'class="(?:flash|error)[^"]*"[^>]*>([^<]{1,300})', page)
    return "; ".join(t.strip() for t in found)


@dataclass
class FaultRun:
    """One run: the points to fire, in flow order, and what happened."""

    settings: object
    tokens: dict[str, str]
    mesh: Path
    workdir: Path
    points: list[str]
    patient_code: str = "PX-9001"
    kills: list[str] = field(default_factory=list)
    trail: list[str] = field(default_factory=list)  # what the driver did and saw, in order
    restarts: int = 0
    case_id: int | None = None
    part_id: int | None = None

    def __post_init__(self):
        self.marker = self.workdir / "killed-at.txt"
        self.service = ServiceProcess(self.settings, self.workdir / "service.log")
        self.lab = build_lab(self.settings)
        self.forms: dict[str, FormClient] = {}

    # ------------------------------------------------------------------ the process

    def start(self) -> None:
        armed = self.points[0] if self.points else None
        self.service.extra_env = {KILL_AT: armed, KILL_MARKER: str(self.marker)} if armed else {}
        try:
            self.service.start()
        except RuntimeError:  # killed during start-up (the start-up sweep's kill point)
            self._died()
            self.start()
            return
        base = self.service.url
        self.api = {name: Api(base, token) for name, token in self.tokens.items()}
        self.forms = {}

    def stop(self) -> None:
        self.service.stop()
        self.lab.engine.dispose()

    def alive(self) -> bool:
        return self.service.process is not None and self.service.process.poll() is None

    def _died(self) -> None:
        process = self.service.process
        process.wait(30)
        armed = self.points[0] if self.points else None
        fired = self.marker.read_text().split() if self.marker.exists() else []
        assert process.returncode == -signal.SIGKILL, (
            f"pocprint exited with {process.returncode}, not by the kill at {armed}:\n"
            + self.service.log_tail()
        )
        assert fired and fired[-1] == armed, f"armed {armed}, marker says {fired}"
        self.kills.append(armed)
        self.points.pop(0)
        self.restarts += 1

    def call(self, fn):
        """Run one request; if the service was killed meanwhile, restart it and return None."""
        try:
            answer = fn()
            if isinstance(answer, requests.Response):
                refused = f" {answer.text[:160]}" if answer.status_code >= 400 else ""
                path = answer.request.path_url
                self.trail.append(
                    f"{answer.request.method} {path} -> {answer.status_code}{refused}"
                )
            return answer
        except CUT_OFF:
            self.trail.append(f"cut off; armed {self.points[:1]}")
            deadline = time.monotonic() + 10
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.alive():
                raise
            self._died()
            self.start()
            return None

    def form(self, username: str) -> FormClient:
        if username not in self.forms:
            self.forms[username] = FormClient(self.service.url, username)
        return self.forms[username]

    # ------------------------------------------------------------------ reading the record

    def read(self, model, row_id):
        with read_session(self.lab.engine) as s:
            return s.get(model, row_id)

    def jobs(self) -> list[BuildJob]:
        with read_session(self.lab.engine) as s:
            return list(
                s.exec(
                    select(BuildJob).where(BuildJob.case_id == self.case_id).order_by(BuildJob.id)
                ).all()
            )

    def printer(self) -> Printer:
        with read_session(self.lab.engine) as s:
            return s.exec(select(Printer)).first()

    # ------------------------------------------------------------------ the flow

    def run(self, timeout: float = 480) -> None:
        self.start()
        deadline = time.monotonic() + timeout
        while not self.step():
            assert time.monotonic() < deadline, (
                f"flow stuck; kills so far {self.kills}; where: {self.where()}"
            )
            time.sleep(0.3)

    def where(self) -> str:
        """The record as the driver sees it, for a stuck run's message."""
        part = self.read(Part, self.part_id) if self.part_id else None
        jobs = [(j.serial, j.state, j.outcome, j.error) for j in self.jobs()]
        printer = self.printer()
        return (
            f"part {part.state if part else None}; jobs {jobs}; printer {printer.state}, "
            f"plate clear {printer.plate_clear}; next point {self.points[:1]}; "
            f"last form answers {[getattr(f, 'last', None) for f in self.forms.values()]}"
        )

    def step(self) -> bool:
        """Do the next thing the case needs; True when the device is delivered."""
        if not self.alive():
            self._died()
            self.start()
            return False
        if self.case_id is None:
            return self._open_case()
        case = self.read(Case, self.case_id)
        if case.review_status != "approved":
            self.call(lambda: self._review())
            return False
        if self.part_id is None:
            return self._upload()
        part = self.read(Part, self.part_id)
        if part.state == PartState.AWAITING_UNITS:
            self.call(
                lambda: self.api["tech"].post(f"/parts/{part.id}/units", json={"units": "mm"})
            )
            return False
        if part.state in (PartState.QUEUED, PartState.PROCESSING):
            return self.call(lambda: self.api["tech"].get(f"/parts/{part.id}")) and False
        assert part.state != PartState.REJECTED, part.error
        jobs = self.jobs()
        seen = f"jobs {[(j.serial, j.state) for j in jobs]}"
        if not self.trail or self.trail[-1] != seen:
            self.trail.append(seen)
        ended = [j for j in jobs if j.state in AWAITING_OUTCOME]
        if ended:  # a print that ended waits for the technician's outcome
            self._record_outcome(ended[0])
            return False
        live = [j for j in jobs if j.state != JobState.COMPLETED]
        if live:
            self._advance_job(live[-1])
            return False
        if not jobs:
            self._sign_and_approve(part)
            return False
        return self._finish_device(jobs[-1])

    def _open_case(self) -> bool:
        body = order_json(patient_code=self.patient_code, indication="fault injection run")
        r = self.call(lambda: self.api["tech"].post("/cases", json=body))
        if r is not None:
            assert r.status_code == 201, r.text
        with read_session(self.lab.engine) as s:
            found = s.exec(select(Case).where(Case.patient_code == self.patient_code)).first()
        self.case_id = found.id if found else None
        return False

    def _review(self):
        body = {"decision": "approve", "scenario": USUAL_SCENARIO, "password": PASSWORD}
        return self.api["rad"].post(f"/cases/{self.case_id}/review", json=body)

    def _upload(self) -> bool:
        def upload():
            with self.mesh.open("rb") as fh:
                return self.api["tech"].post(
                    f"/cases/{self.case_id}/parts", files={"mesh": (self.mesh.name, fh)}
                )

        r = self.call(upload)
        if r is not None:
            assert r.status_code == 201, r.text
        with read_session(self.lab.engine) as s:
            found = s.exec(select(Part).where(Part.case_id == self.case_id)).first()
        self.part_id = found.id if found else None
        return False

    def _sign_and_approve(self, part: Part) -> None:
        with read_session(self.lab.engine) as s:
            signed = s.exec(
                select(Signature).where(
                    Signature.meaning == "approved segmentation",
                    Signature.entity_id == str(part.id),
                )
            ).first()
        rad = self.api["rad"]
        if signed is None:
            self.call(
                lambda: rad.post(f"/parts/{part.id}/segmentation", json={"password": PASSWORD})
            )
            return
        self.call(lambda: rad.post(f"/parts/{part.id}/approval", json={"password": PASSWORD}))

    def _advance_job(self, job: BuildJob) -> None:
        tech = self.api["tech"]
        printer = self.printer()
        if job.state == JobState.SLICE_FAILED:
            raise AssertionError(f"slicing failed: {job.error}")
        if job.state == JobState.READY and not printer.plate_clear and printer.state == "idle":
            self.call(lambda: tech.post(f"/printers/{printer.id}/plate-clear"))
        elif job.state == JobState.INTERRUPTED:
            body = {"resolution": "reprint", "reason": "dispatch cut off; plate checked empty"}
            self.call(lambda: tech.post(f"/jobs/{job.id}/resolve", json=body))
        elif job.state == JobState.PRINTING and self.points[:1] == ["cancel.sent"]:
            self.call(
                lambda: tech.post(f"/jobs/{job.id}/cancel", json={"reason": "fault run: cancel"})
            )

    def _record_outcome(self, job: BuildJob) -> None:
        if job.state != JobState.PRINTED:
            body = {"outcome": "rejected", "note": "print did not complete (fault run)"}
        elif NEED_A_PRINT & set(self.points):
            # A print ended before the points that need one could fire (a slow restart lets
            # it finish): the build is rejected, so its reprint gives them their print.
            body = {"outcome": "rejected", "note": "fault run: another print is needed"}
        else:
            body = {"outcome": "accepted"}
        self.call(lambda: self.api["tech"].post(f"/jobs/{job.id}/outcome", json=body))

    def _finish_device(self, job: BuildJob) -> bool:
        page = f"/devices/{job.serial}"
        if job.outcome == "rejected":  # the latest build was rejected: printed again
            form = self.form("tech")
            body = {"decision": "reprint", "reason": "fault run: printed again"}
            self.call(lambda: form.post(page, f"{page}/disposition", body))
            return False
        with read_session(self.lab.engine) as s:
            delivered = s.exec(select(Delivery).where(Delivery.build_job_id == job.id)).first()
            released = s.exec(
                select(Signature).where(
                    Signature.meaning == RELEASED, Signature.entity_id == job.serial
                )
            ).first()
        if delivered is not None:
            return True
        tech, manager = self.form("tech"), self.form("manager")
        if released is None:
            steps = (
                ("support_removal", {"param-method": "manual"}),
                ("visual_check", {"param-finding": "no defects"}),
            )
            for name, params in steps:
                self.call(lambda n=name, p=params: tech.post(page, f"{page}/steps/{n}", p))
            measured = {
                "feature": "width",
                "designed_mm": "20",
                "measured_mm": "20.05",
                "tolerance_mm": "0.2",
            }
            self.call(lambda: tech.post(page, f"{page}/measurements", measured))
            self.call(
                lambda: manager.post(page, f"{page}/release", {"password": PASSWORD, "comment": ""})
            )
            return False
        self.call(
            lambda: tech.post(
                page, f"{page}/delivery", {"delivered_to": "Theatre 3 nurse", "location": "OR 3"}
            )
        )
        return False


# ---------------------------------------------------------------------- invariants


@dataclass
class Findings:
    jobs: int
    jobs_lost: list[str]
    sent_twice: list[str]
    half_written: list[str]
    chain_ok: bool
    chain_detail: str


def findings(lab, octoprint_files: dict[str, dict]) -> Findings:
    """What the record and the printer say after the run."""
    lost, twice, half = [], [], []
    with read_session(lab.engine) as s:
        jobs = s.exec(select(BuildJob)).all()
        for job in jobs:
            if job.state not in TERMINAL:
                lost.append(f"{job.serial} left {job.state}")
            started = s.exec(
                select(AuditEvent.id).where(
                    AuditEvent.entity_id == job.serial, AuditEvent.action == "job.started"
                )
            ).all()
            prints = octoprint_files.get(f"{job.serial}.gcode", {}).get("prints") or {}
            printed = int(prints.get("success", 0)) + int(prints.get("failure", 0))
            if len(started) > 1 or printed > 1:
                twice.append(f"{job.serial}: {len(started)} starts, {printed} prints")
            for sha in filter(None, [job.mesh_sha256, job.gcode_sha256]):
                if not lab.blobs.verify(sha):
                    half.append(f"{job.serial}: file {sha[:12]} missing or altered")
            if job.state in (JobState.READY, JobState.PRINTING) and not job.gcode_sha256:
                half.append(f"{job.serial}: {job.state} without G-code")
        for sl in s.exec(select(JobSlice)).all():
            if not lab.blobs.verify(sl.gcode_sha256):
                half.append(f"slice {sl.id}: G-code missing or altered")
        for part in s.exec(select(Part)).all():
            if not lab.blobs.verify(part.source_sha256):
                half.append(f"part {part.id}: upload missing or altered")
            if part.state in (PartState.PROCESSED, PartState.APPROVED) and not (
                part.repaired_sha256
                and part.analysis_after
                and lab.blobs.verify(part.repaired_sha256)
            ):
                half.append(f"part {part.id}: {part.state} without its repaired mesh")
    leftovers = list(lab.blobs.root.glob(f"{TEMP_PREFIX}*"))
    half += [f"temporary file left in the store: {p.name}" for p in leftovers]
    check = verify_chain(lab.engine)
    return Findings(len(jobs), lost, twice, half, check.ok, str(check))
