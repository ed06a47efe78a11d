"""Printers without a network API (connector "manual").

Dispatch reserves the printer and the job as for any printer (plate clear consumed, slice
chosen); then the technician downloads the G-code (its SHA-256 checked as it is handed out),
starts it at the machine and confirms on the tablet that the file started is that download,
then the end. Each step is recorded with who and when. The record never calls this a
printer's verification: its evidence is the technician's confirmation (domain/verification).
"""

from __future__ import annotations

from pathlib import Path

from pocprint.connectors.manual import MANUAL_DETAIL
from pocprint.domain.roles import Permission
from pocprint.domain.states import JobState, PrinterState
from pocprint.domain.verification import Evidence
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import Invalid, NotFound, PrinterProblem, WrongState
from pocprint.services.jobs import add_control, control_entry
from pocprint.services.lab import Lab
from pocprint.services.transitions import move
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Printer, utcnow


def _manual_job(lab: Lab, session, job_id: int, state: JobState) -> tuple[BuildJob, Printer]:
    job = session.get(BuildJob, job_id)
    if job is None:
        raise NotFound(f"no build job {job_id}")
    printer = session.get(Printer, job.printer_id) if job.printer_id else None
    if printer is None or printer.name not in lab.printers or not lab.printers[printer.name].manual:
        raise WrongState(f"job {job.serial} is not on a manual printer")
    if job.state != state:
        raise WrongState(f"job {job.serial} is {job.state}, not {state.replace('_', ' ')}")
    return job, printer


def gcode_for_download(lab: Lab, actor: Actor, job_id: int) -> tuple[Path, str]:
    """The approved G-code of a job waiting on a manual printer, checked against its SHA-256
    before it is handed out; returns (file, download name). The download is recorded."""
    actor.require(Permission.OPERATE_PRINTERS)
    with unit_of_work(lab.engine) as session:
        job, printer = _manual_job(lab, session, job_id, JobState.DISPATCHING)
        if not job.gcode_sha256 or not lab.blobs.verify(job.gcode_sha256):
            raise PrinterProblem(
                f"the stored G-code of job {job.serial} no longer matches its approved SHA-256; "
                "do not print it"
            )
        entry = control_entry(actor, "download", None)
        entry["gcode_sha256_checked"] = job.gcode_sha256
        add_control(job, entry)
        audit.record(
            session,
            actor,
            "job.gcode_downloaded",
            "job",
            job.serial,
            after={"printer": printer.name, "gcode_sha256": job.gcode_sha256},
        )
        return lab.blobs.path(job.gcode_sha256), job.remote_name or f"{job.serial}.gcode"


def confirm_start(
    lab: Lab, actor: Actor, job_id: int, note: str = "", *, confirmed_file: bool = False
) -> None:
    """The technician started the downloaded file at the printer and confirms it was that
    file (`confirmed_file`): the build's verification evidence."""
    actor.require(Permission.OPERATE_PRINTERS)
    if confirmed_file is not True:
        raise Invalid(
            "confirm that the file you started at the printer is the G-code downloaded from "
            "pocprint for this job"
        )
    with unit_of_work(lab.engine) as session:
        job, printer = _manual_job(lab, session, job_id, JobState.DISPATCHING)
        downloads = [c for c in job.controls or [] if c.get("action") == "download"]
        if not downloads:
            raise WrongState("download the verified G-code first, then start it at the printer")
        now = utcnow()
        verification = {
            "evidence": Evidence.TECHNICIAN_CONFIRMED_DOWNLOAD.value,
            "gcode_sha256": job.gcode_sha256,
            "downloaded_by": downloads[-1].get("by"),
            "downloaded_at": downloads[-1].get("at"),
            "confirmed_by": actor.username,
            "confirmed_at": now.isoformat(),
        }
        move(
            session,
            job,
            JobState.PRINTING,
            actor=actor,
            action="job.started",
            expected=JobState.DISPATCHING,
            after={"printer": printer.name, "manual": True, "verification": verification},
            reason=note.strip() or None,
            started_at=now,
            printer_sha1=None,  # the printer reported no hash; pocprint's own is not one
            printer_report={"verification": verification},
            controls=[*(job.controls or []), control_entry(actor, "start", note.strip() or None)],
        )
        move(
            session,
            printer,
            PrinterState.PRINTING,
            actor=actor,
            action="printer.state",
            reason=f"started {job.remote_name} at the printer",
            state_detail=MANUAL_DETAIL,
            job_file=job.remote_name,
        )


def confirm_end(lab: Lab, actor: Actor, job_id: int, result: str, note: str = "") -> None:
    """The print ended at the printer: ``printed`` (finished) or ``failed`` (with a reason)."""
    actor.require(Permission.OPERATE_PRINTERS)
    target = {"printed": JobState.PRINTED, "failed": JobState.FAILED}.get(result)
    if target is None:
        raise Invalid("result must be 'printed' or 'failed'")
    note = (note or "").strip()
    if target == JobState.FAILED and not note:
        raise Invalid("say why the print failed")
    with unit_of_work(lab.engine) as session:
        job, printer = _manual_job(lab, session, job_id, JobState.PRINTING)
        move(
            session,
            job,
            target,
            actor=actor,
            action="job.printed" if target == JobState.PRINTED else "job.failed",
            expected=JobState.PRINTING,
            after={"printer": printer.name, "manual": True},
            reason=note or None,
            finished_at=utcnow(),
            progress=100.0 if target == JobState.PRINTED else job.progress,
            error=f"the technician reports the print failed: {note}"
            if target == JobState.FAILED
            else job.error,
            controls=[*(job.controls or []), control_entry(actor, f"end_{result}", note or None)],
        )
        move(
            session,
            printer,
            PrinterState.IDLE,
            actor=actor,
            action="printer.state",
            reason=f"the print of {job.remote_name} ended",
            state_detail=MANUAL_DETAIL,
            job_file=None,
            plate_clear=False,
        )
