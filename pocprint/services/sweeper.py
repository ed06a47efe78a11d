"""The sweeper: worker steps whose lease ran out (their worker crashed, was killed or lost
its machine) are handed on, at start-up and every few seconds while the worker runs.

Analysis and slicing are repeatable, so they are queued again (and given up, with the
reason, after `max_attempts` cut-offs). A send to a printer that was cut off may or may not
have reached it: it is never re-sent automatically; if the printer is printing the job's
file the job is followed again; if the printer is idle and does not even hold the file,
nothing was sent and the job waits in the queue again; otherwise it is marked interrupted
for a technician.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

from sqlmodel import select

from pocprint.connectors.base import ConnectorError, PrinterState
from pocprint.domain.states import JobState, PartState
from pocprint.domain.steps import Step
from pocprint.faults import kill_point
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.services.leases import expired, is_plan, pid_alive
from pocprint.services.transitions import StaleState, move, update_if
from pocprint.store.blobs import TEMP_PREFIX, temp_writer
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Part, Printer, utcnow

log = logging.getLogger(__name__)
CUT_OFF = "its worker stopped during this step (lease {lease} expired)"
STALE_TEMP_S = 3600  # a temporary file in the store older than this was left by a crash


@dataclass(frozen=True)
class _Send:
    job_id: int
    lease: str | None
    remote: str | None
    printer: str | None


def sweep(lab: Lab) -> dict[str, int]:
    """Hand on every step whose lease expired; returns what was done."""
    counts = dict.fromkeys(
        (
            "parts_requeued",
            "parts_rejected",
            "jobs_requeued",
            "jobs_failed",
            "dispatch_followed",
            "dispatch_requeued",
            "dispatch_interrupted",
        ),
        0,
    )
    now = utcnow()
    with read_session(lab.engine) as session:
        parts = [
            (p.id, p.lease_owner)
            for p in session.exec(select(Part).where(Part.state == PartState.PROCESSING))
            if expired(p.lease_owner, p.lease_expires_at, now)
        ]
        jobs = [
            (j.id, j.lease_owner)
            for j in session.exec(select(BuildJob).where(BuildJob.state == JobState.SLICING))
            if expired(j.lease_owner, j.lease_expires_at, now)
        ]
        sends, planned = [], []
        for job in session.exec(select(BuildJob).where(BuildJob.state == JobState.DISPATCHING)):
            printer = session.get(Printer, job.printer_id) if job.printer_id else None
            name = printer.name if printer else None
            if name in lab.printers and lab.printers[name].manual:
                continue  # waits for the technician to download and start it; nothing sent
            if is_plan(job.lease_owner) and expired(job.lease_owner, job.lease_expires_at, now):
                planned.append((job.id, job.lease_owner))
            elif expired(job.lease_owner, job.lease_expires_at, now):
                sends.append(_Send(job.id, job.lease_owner, job.remote_name, name))
    if parts or jobs or sends or planned:
        kill_point("sweep.found")
    outcomes = [_hand_on_part(lab, part_id, lease) for part_id, lease in parts]
    outcomes += [_hand_on_slicing(lab, job_id, lease) for job_id, lease in jobs]
    outcomes += [_settle_send(lab, send) for send in sends]
    outcomes += [_unplan(lab, job_id, lease) for job_id, lease in planned]
    for outcome in filter(None, outcomes):
        counts[outcome] += 1
    _remove_stale_temporaries(lab)
    if any(counts.values()):
        log.warning("sweeper: %s", counts)
    return counts


def recover(lab: Lab) -> dict[str, int]:
    """At start-up: the previous process is gone, so every step it held is swept now."""
    return sweep(lab)


def _hand_on_part(lab: Lab, part_id: int, lease: str | None) -> str | None:
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        why = CUT_OFF.format(lease=lease or "none")
        give_up = part.attempts >= lab.settings.max_attempts
        try:
            move(
                session,
                part,
                PartState.REJECTED if give_up else PartState.QUEUED,
                actor=SYSTEM,
                action="part.lease_expired",
                expected=PartState.PROCESSING,
                lease=lease,
                reason=why,
                **(
                    {"error": f"analysis was cut off {part.attempts} times; {why}"}
                    if give_up
                    else {"retry_at": None}
                ),
            )
        except StaleState:
            return None  # its worker finished after all
    if not give_up:
        lab.due(Step.PROCESS_PART, part_id)
    return "parts_rejected" if give_up else "parts_requeued"


def _hand_on_slicing(lab: Lab, job_id: int, lease: str | None) -> str | None:
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        why = CUT_OFF.format(lease=lease or "none")
        give_up = job.attempts >= lab.settings.max_attempts
        try:
            move(
                session,
                job,
                JobState.SLICE_FAILED if give_up else JobState.SLICE_QUEUED,
                actor=SYSTEM,
                action="job.lease_expired",
                expected=JobState.SLICING,
                lease=lease,
                reason=why,
                **(
                    {"error": f"slicing was cut off {job.attempts} times; {why}"}
                    if give_up
                    else {"retry_at": None}
                ),
            )
        except StaleState:
            return None  # its worker finished after all
    if not give_up:
        lab.due(Step.SLICE_JOB, job_id)
    return "jobs_failed" if give_up else "jobs_requeued"


def _settle_send(lab: Lab, send: _Send) -> str | None:
    """A cut-off send: follow the print if the printer runs our file, else interrupted."""
    status, untouched = None, False
    if send.printer in lab.printers:
        connector = lab.connector(send.printer)  # asked outside any transaction
        status = connector.status()
        if status.state == PrinterState.IDLE and send.remote:
            try:
                untouched = connector.file_info(send.remote) is None
            except ConnectorError:
                untouched = False
    running = (
        status is not None
        and status.state in (PrinterState.PRINTING, PrinterState.PAUSED, PrinterState.BUSY)
        and (status.job_file or "").rsplit("/", 1)[-1] == send.remote
    )
    why = CUT_OFF.format(lease=send.lease or "none")
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, send.job_id)
        printer_id, plate_consumed = job.printer_id, job.dispatched_by_plate_clear is not None
        if running:
            target, outcome = JobState.PRINTING, "dispatch_followed"
            reason = f"{why}; {send.printer} is printing {send.remote}, so it is followed again"
            values = {"started_at": job.started_at or utcnow()}
        elif untouched:
            # Idle, and not even the file reached it: nothing was sent, so the job simply
            # waits in the queue again and the plate is still clear.
            target, outcome = JobState.READY, "dispatch_requeued"
            reason = f"{why}; nothing had reached {send.printer}, so the job waits again"
            values = {"printer_id": None, "remote_name": None}
        else:
            target, outcome = JobState.INTERRUPTED, "dispatch_interrupted"
            reason = f"{why} while sending to the printer; check the printer and resolve"
            values = {"error": reason}
        try:
            move(
                session,
                job,
                target,
                actor=SYSTEM,
                action="job.lease_expired",
                expected=JobState.DISPATCHING,
                lease=send.lease,
                reason=reason,
                **values,
            )
        except StaleState:
            return None  # its worker finished after all
        if outcome == "dispatch_requeued" and plate_consumed:  # the claim consumed it
            printer = session.get(Printer, printer_id)
            update_if(session, printer, state=PrinterState.IDLE, plate_clear=True)
    return outcome


def _unplan(lab: Lab, job_id: int, lease: str) -> str | None:
    """A planning claim no sender took over (its message was lost, or the planner died
    before sending it): nothing reached the printer, so the job waits in the queue again
    and the printer's plate is given back."""
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        printer_id = job.printer_id
        try:
            move(
                session,
                job,
                JobState.READY,
                actor=SYSTEM,
                action="job.lease_expired",
                expected=JobState.DISPATCHING,
                lease=lease,
                reason=f"no sender took the job over (planning lease {lease} expired); "
                "nothing was sent, so the job waits again",
                printer_id=None,
                remote_name=None,
            )
        except StaleState:
            return None  # a sender took it over after all
        if printer_id is not None:
            update_if(
                session, session.get(Printer, printer_id), state=PrinterState.IDLE, plate_clear=True
            )
    lab.due(Step.DISPATCH)
    return "dispatch_requeued"


def _remove_stale_temporaries(lab: Lab) -> None:
    """A crash between writing a file and renaming it leaves a temporary name in the store;
    it is never a record (records point to final names). A file whose writer process on this
    host is gone (pid and host are in the name), or that is older than an hour, is removed."""
    cutoff = time.time() - STALE_TEMP_S
    here = socket.gethostname()
    for temp in lab.blobs.root.glob(f"{TEMP_PREFIX}*"):
        pid, host = temp_writer(temp.name)
        mine = host in (None, here)  # a shared store: another host's writer is not ours to judge
        try:
            if (mine and pid is not None and not pid_alive(pid)) or temp.stat().st_mtime < cutoff:
                temp.unlink()
        except FileNotFoundError:
            continue
