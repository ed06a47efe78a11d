"""Worker step: poll every printer concurrently and follow the jobs on them.

A job is marked printed only when the printer itself records a successful print of that
file after the job started (its own print history grew; the printer's clock is never
compared with ours); losing contact marks it interrupted, never done.

Printers are read outside any transaction; the readings are then applied in one, each job
only if it is still in the state it was read in and on that printer. A technician who
cancelled or resolved a job meanwhile wins: the stale reading is dropped for that job.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlmodel import select

from pocprint.connectors.base import ConnectorError, PrinterState, PrinterStatus, RemoteFile
from pocprint.domain.states import JobState
from pocprint.faults import kill_point
from pocprint.services import audit
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.services.transitions import StaleState, move, update_if
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
    read_at: datetime


# Printer host states that are not a print (a connection being made): no revocation.
_CONNECTING = ("Connecting", "Opening serial connection", "Detecting serial connection")


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
    kill_point("poll.read")
    with unit_of_work(lab.engine) as session:
        # Load the polled printers and their jobs in two queries up front (locked on
        # PostgreSQL, so no technician's change slips in between check and write): _apply's
        # session.get then finds them in the session, and the commit sends the updates together.
        session.exec(
            select(Printer)
            .where(Printer.id.in_([r.target.printer_id for r in readings]))
            .with_for_update()
        ).all()
        job_ids = [r.target.job_id for r in readings if r.target.job_id is not None]
        if job_ids:
            session.exec(select(BuildJob).where(BuildJob.id.in_(job_ids)).with_for_update()).all()
        for reading in readings:
            _apply(session, reading)
    kill_point("poll.applied")
    return len(readings)


def _read(lab: Lab, target: _Target) -> _Reading:
    read_at = utcnow()
    connector = lab.connector(target.name)
    status = connector.status()
    remote_file = None
    if target.remote and status.state == PrinterState.IDLE:
        try:
            remote_file = connector.file_info(target.remote)
        except ConnectorError as exc:
            log.info("printer %s: file info unavailable: %s", target.name, exc)
    return _Reading(target, status, remote_file, read_at)


def _apply(session, reading: _Reading) -> None:
    status, target = reading.status, reading.target
    printer = session.get(Printer, target.printer_id)
    now = utcnow()
    observed = dict(
        state_detail=(status.detail or "")[:200],
        error=status.error,
        job_file=status.job_file,
        progress=status.progress,
        print_time_left_s=status.print_time_left_s,
        temperatures=status.temperatures,
        last_polled_at=now,
    )
    if status.state == PrinterState.OFFLINE:
        observed["failed_polls"] = printer.failed_polls + 1
    else:
        observed.update(failed_polls=0, last_seen_at=now)
    if printer.state != status.state:
        move(
            session,
            printer,
            status.state,
            actor=SYSTEM,
            action="printer.state",
            after={"detail": status.detail, "error": status.error},
            **observed,
        )
    else:
        for key, value in observed.items():
            setattr(printer, key, value)
    if target.job_id is not None:
        _follow_job(session, session.get(BuildJob, target.job_id), reading, printer)
    else:
        _withdraw_plate_if_printing(session, printer, reading)


def _withdraw_plate_if_printing(session, printer: Printer, reading: _Reading) -> None:
    """A printer seen running a print pocprint did not send has no clear plate any more
    (unless the plate was confirmed clear after this reading was taken)."""
    status = reading.status
    running = status.state in (PrinterState.PRINTING, PrinterState.PAUSED) or (
        status.state == PrinterState.BUSY and status.detail not in _CONNECTING
    )
    if not running or not printer.plate_clear:
        return
    result = session.execute(
        update(Printer)
        .where(
            Printer.id == printer.id,
            Printer.plate_clear,
            or_(Printer.plate_clear_at.is_(None), Printer.plate_clear_at <= reading.read_at),
        )
        .values(plate_clear=False, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    if result.rowcount != 1:
        return
    session.refresh(printer)
    audit.record(
        session,
        SYSTEM,
        "printer.plate_clear_withdrawn",
        "printer",
        printer.name,
        before={"plate_clear": True},
        after={"plate_clear": False, "state": status.state},
        reason=f"the printer is running {status.job_file or 'a print'}, which pocprint did "
        "not send; confirm the plate clear again when it is",
    )


def _set_job(
    session, job: BuildJob, expected: str, state: JobState, action: str, reason: str, **values
) -> None:
    if state in (JobState.PRINTED, JobState.FAILED, JobState.CANCELLED):
        values["finished_at"] = utcnow()
    after = {k: values[k] for k in ("printer_sha1",) if k in values}
    try:
        move(
            session,
            job,
            state,
            actor=SYSTEM,
            action=action,
            expected=expected,
            after=after,
            reason=reason,
            **values,
        )
    except StaleState as exc:
        log.info("job %s: reading dropped: %s", job.serial, exc)


def _finished(job: BuildJob, finished: RemoteFile | None) -> bool:
    """Has the printer recorded a print of the file since our start? Judged by the printer's
    own history of the file (counts and its own last-print time) against the history seen
    before the start, so a printer clock that differs from ours changes nothing."""
    if finished is None:
        return False
    before = ((job.printer_report or {}).get("verified_upload") or {}).get("history_before")
    count = finished.prints_success + finished.prints_failure
    if before is None:  # a job sent before the history was kept: the file was new then
        return count > 0
    return count > before["prints_success"] + before["prints_failure"] or (
        finished.last_print_at is not None and finished.last_print_at != before["last_print_at"]
    )


def _follow_job(session, job: BuildJob | None, reading: _Reading, printer: Printer) -> None:
    status, target = reading.status, reading.target
    if job is None or job.state != target.job_state or job.printer_id != printer.id:
        return  # someone acted on the job since the printer was read: their change stands
    expected = target.job_state
    ours = status.job_file is not None and status.job_file.rsplit("/", 1)[-1] == job.remote_name
    if status.state in (PrinterState.PRINTING, PrinterState.PAUSED, PrinterState.BUSY) and ours:
        if job.state == JobState.INTERRUPTED:
            _set_job(
                session,
                job,
                expected,
                JobState.PRINTING,
                "job.contact_restored",
                "printer reports the print running",
                error=None,
                progress=status.progress,
                print_time_left_s=status.print_time_left_s,
            )
        else:
            update_if(
                session,
                job,
                state=expected,
                progress=status.progress,
                print_time_left_s=status.print_time_left_s,
            )
        return
    if job.state == JobState.INTERRUPTED:
        if _finished(job, reading.file):
            _finish(session, job, expected, reading.file, printer)
        return
    if status.state == PrinterState.OFFLINE:
        error = (
            f"lost contact with {printer.name} during the print: {status.error or status.detail}"
        )
        _set_job(
            session, job, expected, JobState.INTERRUPTED, "job.interrupted", error, error=error
        )
    elif status.state == PrinterState.ERROR:
        error = f"{printer.name} reported an error: {status.error or status.detail}"
        _set_job(session, job, expected, JobState.FAILED, "job.failed", error, error=error)
    elif status.state in (PrinterState.PRINTING, PrinterState.PAUSED, PrinterState.BUSY):
        error = f"{printer.name} is printing another file ({status.job_file})"
        _set_job(
            session, job, expected, JobState.INTERRUPTED, "job.interrupted", error, error=error
        )
    elif status.state == PrinterState.IDLE:
        if _finished(job, reading.file):
            _finish(session, job, expected, reading.file, printer)
        elif job.started_at and utcnow() - job.started_at > START_GRACE:
            error = f"{printer.name} is idle and records no finished print of {job.remote_name}"
            _set_job(
                session, job, expected, JobState.INTERRUPTED, "job.interrupted", error, error=error
            )


def _finish(session, job: BuildJob, expected: str, finished: RemoteFile, printer: Printer) -> None:
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
    if finished.last_print_success:
        _set_job(
            session,
            job,
            expected,
            JobState.PRINTED,
            "job.printed",
            f"{printer.name} reports success",
            printer_report=report,
            progress=100.0,
            printer_sha1=finished.sha1,
        )
    elif job.cancel_reason:
        _set_job(
            session,
            job,
            expected,
            JobState.CANCELLED,
            "job.cancelled",
            job.cancel_reason,
            printer_report=report,
        )
    else:
        error = f"{printer.name} reports the print did not complete"
        _set_job(
            session,
            job,
            expected,
            JobState.FAILED,
            "job.failed",
            error,
            printer_report=report,
            error=error,
        )
