"""Worker step: poll every printer concurrently and follow the jobs on them.

A job is marked printed only when the printer itself records a successful print of that
file after the job started; losing contact marks it interrupted, never done.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import select

from pocprint.connectors.base import ConnectorError, PrinterState, PrinterStatus, RemoteFile
from pocprint.domain.states import JobState
from pocprint.services import audit
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Printer, utcnow

log = logging.getLogger(__name__)
FOLLOWED = (JobState.PRINTING, JobState.INTERRUPTED)
START_GRACE = timedelta(seconds=60)
MAX_BACKOFF_S = 30.0


@dataclass
class _Target:
    printer_id: int
    name: str
    job_id: int | None
    remote: str | None
    job_state: str | None


@dataclass
class _Reading:
    target: _Target
    status: PrinterStatus
    file: RemoteFile | None


def _due(printer: Printer, interval: float, now) -> bool:
    if printer.failed_polls == 0 or printer.last_polled_at is None:
        return True
    wait = min(interval * 2**printer.failed_polls, MAX_BACKOFF_S)
    return now >= printer.last_polled_at + timedelta(seconds=wait)


def poll_printers(lab: Lab, executor: ThreadPoolExecutor | None = None) -> int:
    now = utcnow()
    with read_session(lab.engine) as session:
        printers = session.exec(select(Printer).where(Printer.enabled)).all()
        # One query for the followed jobs of the whole fleet, not one per printer.
        followed: dict[int, BuildJob] = {}
        for job in session.exec(select(BuildJob).where(BuildJob.state.in_(list(FOLLOWED)))):
            followed.setdefault(job.printer_id, job)
        targets = []
        for p in printers:
            if p.name not in lab.printers or not _due(p, lab.settings.poll_interval_s, now):
                continue
            if lab.printers[p.name].manual:
                continue  # no network API: its state is what technicians confirm
            job = followed.get(p.id)
            targets.append(
                _Target(
                    p.id,
                    p.name,
                    job.id if job else None,
                    job.remote_name if job else None,
                    job.state if job else None,
                )
            )
    if not targets:
        return 0
    own = executor is None
    executor = executor or ThreadPoolExecutor(max_workers=min(32, len(targets)))
    try:
        readings = list(executor.map(lambda t: _read(lab, t), targets))
    finally:
        if own:
            executor.shutdown(wait=False)
    with unit_of_work(lab.engine) as session:
        # Load the polled printers and their jobs in two queries up front: _apply's
        # session.get then finds them in the session instead of a SELECT (and an autoflush)
        # per printer, and the commit sends the updates together.
        loaded = session.exec(
            select(Printer).where(Printer.id.in_([r.target.printer_id for r in readings]))
        ).all()
        job_ids = [r.target.job_id for r in readings if r.target.job_id is not None]
        if job_ids:
            loaded += session.exec(select(BuildJob).where(BuildJob.id.in_(job_ids))).all()
        for reading in readings:
            _apply(session, reading)
    return len(readings)


def _read(lab: Lab, target: _Target) -> _Reading:
    connector = lab.connector(target.name)
    status = connector.status()
    remote_file = None
    if target.remote and status.state == PrinterState.IDLE:
        try:
            remote_file = connector.file_info(target.remote)
        except ConnectorError as exc:
            log.info("printer %s: file info unavailable: %s", target.name, exc)
    return _Reading(target, status, remote_file)


def _apply(session, reading: _Reading) -> None:
    status, target = reading.status, reading.target
    printer = session.get(Printer, target.printer_id)
    now = utcnow()
    previous = printer.state
    printer.state = status.state
    printer.state_detail = (status.detail or "")[:200]
    printer.error = status.error
    printer.job_file = status.job_file
    printer.progress = status.progress
    printer.print_time_left_s = status.print_time_left_s
    printer.temperatures = status.temperatures
    printer.last_polled_at = now
    if status.state == PrinterState.OFFLINE:
        printer.failed_polls += 1
    else:
        printer.failed_polls = 0
        printer.last_seen_at = now
    if previous != status.state:
        audit.record(
            session,
            SYSTEM,
            "printer.state",
            "printer",
            printer.name,
            before={"state": previous},
            after={"state": status.state, "detail": status.detail, "error": status.error},
        )
    if target.job_id is not None:
        _follow_job(session, session.get(BuildJob, target.job_id), reading, printer)


def _set_job(session, job: BuildJob, state: JobState, action: str, reason: str, **after) -> None:
    before = job.state
    job.state = state
    job.updated_at = utcnow()
    if state in (JobState.PRINTED, JobState.FAILED, JobState.CANCELLED):
        job.finished_at = job.updated_at
    audit.record(
        session,
        SYSTEM,
        action,
        "job",
        job.serial,
        before={"state": before},
        after={"state": state, **after},
        reason=reason,
    )


def _follow_job(session, job: BuildJob, reading: _Reading, printer: Printer) -> None:
    status = reading.status
    ours = status.job_file is not None and status.job_file.rsplit("/", 1)[-1] == job.remote_name
    if status.state in (PrinterState.PRINTING, PrinterState.PAUSED, PrinterState.BUSY) and ours:
        job.progress = status.progress
        job.print_time_left_s = status.print_time_left_s
        if job.state == JobState.INTERRUPTED:
            job.error = None
            _set_job(
                session,
                job,
                JobState.PRINTING,
                "job.contact_restored",
                "printer reports the print running",
            )
        return
    if job.state == JobState.INTERRUPTED:
        finished = reading.file
        if (
            finished
            and finished.last_print_at
            and job.started_at
            and (finished.last_print_at >= job.started_at.timestamp() - 2)
        ):
            _finish(session, job, finished, printer)
        return
    if status.state == PrinterState.OFFLINE:
        job.error = (
            f"lost contact with {printer.name} during the print: {status.error or status.detail}"
        )
        _set_job(session, job, JobState.INTERRUPTED, "job.interrupted", job.error)
    elif status.state == PrinterState.ERROR:
        job.error = f"{printer.name} reported an error: {status.error or status.detail}"
        _set_job(session, job, JobState.FAILED, "job.failed", job.error)
    elif status.state in (PrinterState.PRINTING, PrinterState.PAUSED, PrinterState.BUSY):
        job.error = f"{printer.name} is printing another file ({status.job_file})"
        _set_job(session, job, JobState.INTERRUPTED, "job.interrupted", job.error)
    elif status.state == PrinterState.IDLE:
        finished = reading.file
        started = job.started_at.timestamp() if job.started_at else 0
        if finished and finished.last_print_at and finished.last_print_at >= started - 2:
            _finish(session, job, finished, printer)
        elif job.started_at and utcnow() - job.started_at > START_GRACE:
            job.error = f"{printer.name} is idle and records no finished print of {job.remote_name}"
            _set_job(session, job, JobState.INTERRUPTED, "job.interrupted", job.error)


def _finish(session, job: BuildJob, finished: RemoteFile, printer: Printer) -> None:
    report = dict(job.printer_report or {})
    report["final"] = {
        "file": finished.name,
        "sha1": finished.sha1,
        "size": finished.size,
        "last_print_at": finished.last_print_at,
        "last_print_success": finished.last_print_success,
        "prints_success": finished.prints_success,
        "prints_failure": finished.prints_failure,
    }
    job.printer_report = report
    job.progress = 100.0 if finished.last_print_success else job.progress
    if finished.last_print_success:
        _set_job(
            session,
            job,
            JobState.PRINTED,
            "job.printed",
            f"{printer.name} reports success",
            printer_sha1=finished.sha1,
        )
    elif job.cancel_reason:
        _set_job(session, job, JobState.CANCELLED, "job.cancelled", job.cancel_reason)
    else:
        job.error = f"{printer.name} reports the print did not complete"
        _set_job(session, job, JobState.FAILED, "job.failed", job.error)
