"""Plate-clear confirmation and dispatch: send the approved G-code to a free printer.

Order of a dispatch, each step recorded:
1. in one transaction the job is claimed (ready -> dispatching) and the printer's plate-clear
   confirmation is consumed, so neither can be used twice;
2. the G-code is uploaded, and the printer's SHA-1 of the file and a re-download are compared
   with the approved file before anything starts;
3. the print is started and the printer must report it started.
A failure before the start puts the job back in the queue; a failure that leaves it unclear
whether the printer started marks the job interrupted for a technician. Nothing is re-sent
automatically.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from pathlib import Path

from sqlmodel import select

from pocprint.connectors.base import ConnectorError, PrinterState
from pocprint.domain.dispatch import JobView, PrinterView, assign
from pocprint.domain.placement import BuildVolume
from pocprint.domain.roles import Permission
from pocprint.domain.states import ON_PRINTER, JobState
from pocprint.services import audit
from pocprint.services.actors import SYSTEM, Actor
from pocprint.services.cases import require_current_approval
from pocprint.services.errors import NotApproved, NotFound, PrinterProblem
from pocprint.services.lab import Lab
from pocprint.services.steps import claim
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Case, Printer, utcnow

log = logging.getLogger(__name__)


def confirm_plate_clear(lab: Lab, actor: Actor, printer_id: int) -> None:
    actor.require(Permission.OPERATE_PRINTERS)
    with unit_of_work(lab.engine) as session:
        printer = session.get(Printer, printer_id)
        if printer is None:
            raise NotFound(f"no printer {printer_id}")
        busy = session.exec(
            select(BuildJob).where(
                BuildJob.printer_id == printer_id, BuildJob.state.in_(list(ON_PRINTER))
            )
        ).first()
        if busy is not None:
            raise PrinterProblem(
                f"{printer.name} still holds job {busy.serial} ({busy.state}); "
                "finish or resolve it first"
            )
        if printer.state != PrinterState.IDLE:
            raise PrinterProblem(f"{printer.name} is {printer.state}, not idle")
        printer.plate_clear = True
        printer.plate_clear_by = actor.user_id
        printer.plate_clear_at = utcnow()
        audit.record(
            session,
            actor,
            "printer.plate_clear",
            "printer",
            printer.name,
            before={"plate_clear": False},
            after={"plate_clear": True},
        )
    lab.wake("dispatch")


def dispatch_ready_jobs(lab: Lab) -> int:
    """Pair ready jobs with free printers and send them; returns how many were started."""
    claimed = _claim_pairs(lab)
    return sum(1 for job_id, printer_name in claimed if _send(lab, job_id, printer_name))


def _claim_pairs(lab: Lab) -> list[tuple[int, str]]:
    today = utcnow().date()
    with unit_of_work(lab.engine) as session:
        printers = session.exec(
            select(Printer).where(
                Printer.enabled, Printer.plate_clear, Printer.state == PrinterState.IDLE
            )
        ).all()
        if not printers:
            return []
        rows = session.exec(
            select(BuildJob, Case.needed_by)
            .join(Case, Case.id == BuildJob.case_id)
            .where(BuildJob.state == JobState.READY)
        ).all()
        if not rows:
            return []
        views = [
            PrinterView(
                id=p.id,
                name=p.name,
                idle=True,
                plate_clear=True,
                profiles=frozenset(p.profiles or []),
                volume=BuildVolume(p.build_x, p.build_y, p.build_z),
                enabled=p.enabled,
                calibration_due=p.calibration_due,
            )
            for p in printers
            if p.name in lab.printers
        ]
        jobs = [
            JobView(j.id, j.profile_id, needed_by, j.created_at, tuple(j.extents or (0, 0, 0)))
            for j, needed_by in rows
        ]
        claimed = []
        for job_view, printer_view in assign(views, jobs, today):
            job = session.get(BuildJob, job_view.id)
            try:
                require_current_approval(session, job)
            except NotApproved as exc:
                audit.record(
                    session, SYSTEM, "job.dispatch_refused", "job", job.serial, reason=str(exc)
                )
                continue
            printer = session.get(Printer, printer_view.id)
            remote = f"{job.serial}.gcode"
            if not claim(
                session,
                BuildJob,
                job.id,
                JobState.READY,
                JobState.DISPATCHING,
                printer_id=printer.id,
                remote_name=remote,
                dispatched_at=utcnow(),
                dispatched_by_plate_clear=printer.plate_clear_by,
                updated_at=utcnow(),
            ):
                continue
            printer.plate_clear = False
            audit.record(
                session,
                SYSTEM,
                "job.dispatching",
                "job",
                job.serial,
                before={"state": JobState.READY},
                after={
                    "state": JobState.DISPATCHING,
                    "printer": printer.name,
                    "printer_serial": printer.serial,
                    "plate_clear_by": printer.plate_clear_by,
                    "plate_clear_at": printer.plate_clear_at,
                    "remote_name": remote,
                },
            )
            claimed.append((job.id, printer.name))
        return claimed


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _send(lab: Lab, job_id: int, printer_name: str) -> bool:
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        remote, gcode_sha, gcode_sha1 = job.remote_name, job.gcode_sha256, job.gcode_sha1
    connector = lab.connector(printer_name)
    gcode_path = lab.blobs.path(gcode_sha)
    try:
        if not lab.blobs.verify(gcode_sha):
            raise ConnectorError("the stored G-code no longer matches its approved SHA-256")
        remote_file = connector.upload(gcode_path, remote)
        if remote_file.sha1 != gcode_sha1:
            raise ConnectorError(
                f"printer reports SHA-1 {remote_file.sha1} for the upload, expected {gcode_sha1}"
            )
        with tempfile.TemporaryDirectory(dir=lab.settings.work_dir) as tmp:
            copy = Path(tmp) / remote
            connector.download(remote, copy)
            if _file_sha256(copy) != gcode_sha:
                raise ConnectorError(
                    "the file re-downloaded from the printer differs from the approved G-code"
                )
    except ConnectorError as exc:
        with contextlib.suppress(ConnectorError):  # never leave an unverified file behind
            connector.delete(remote)
        _back_to_queue(lab, job_id, printer_name, f"upload to {printer_name} failed: {exc}")
        return False
    verified = {"sha1": remote_file.sha1, "size": remote_file.size, "redownload_sha256": gcode_sha}
    try:
        connector.start(remote)
    except ConnectorError as exc:
        status = connector.status()
        if status.job_file == remote and status.state in (
            PrinterState.PRINTING,
            PrinterState.BUSY,
            PrinterState.PAUSED,
        ):
            log.warning("job %s: start reported %s but the printer is printing it", job_id, exc)
        elif status.state == PrinterState.OFFLINE:
            _mark_interrupted(lab, job_id, f"printer went offline while starting: {exc}")
            return False
        else:
            _back_to_queue(lab, job_id, printer_name, f"{printer_name} did not start: {exc}")
            return False
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        job.state = JobState.PRINTING
        job.printer_sha1 = remote_file.sha1
        job.started_at = job.updated_at = utcnow()
        job.printer_report = {"verified_upload": verified}
        audit.record(
            session,
            SYSTEM,
            "job.started",
            "job",
            job.serial,
            before={"state": JobState.DISPATCHING},
            after={"state": JobState.PRINTING, "printer": printer_name, "verified": verified},
        )
    return True


def _back_to_queue(lab: Lab, job_id: int, printer_name: str, message: str) -> None:
    """Nothing started: the job returns to the queue and the plate is still clear."""
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        printer = session.get(Printer, job.printer_id)
        job.state = JobState.READY
        job.printer_id = None
        job.remote_name = None
        job.updated_at = utcnow()
        if printer is not None:
            printer.plate_clear = True
        audit.record(
            session,
            SYSTEM,
            "job.dispatch_failed",
            "job",
            job.serial,
            before={"state": JobState.DISPATCHING, "printer": printer_name},
            after={"state": JobState.READY},
            reason=message,
        )
    log.warning("job %s: %s", job_id, message)


def _mark_interrupted(lab: Lab, job_id: int, message: str) -> None:
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        before = job.state
        job.state = JobState.INTERRUPTED
        job.error = message
        job.updated_at = utcnow()
        audit.record(
            session,
            SYSTEM,
            "job.interrupted",
            "job",
            job.serial,
            before={"state": before},
            after={"state": JobState.INTERRUPTED},
            reason=message,
        )
