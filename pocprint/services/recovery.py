"""Start-up recovery: steps cut off by a stop or crash are resumed or marked, never lost.

Mesh processing and slicing are repeatable, so they are queued again. A dispatch that was
cut off may or may not have reached the printer: it is never re-sent automatically; if the
printer is printing the job's file the job is followed again, otherwise it is marked
interrupted for a technician.
"""

from __future__ import annotations

from sqlmodel import select

from pocprint.connectors.base import PrinterState
from pocprint.domain.states import JobState, PartState
from pocprint.services import audit
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Part, Printer, utcnow

RESTART = "the service stopped during this step"


def recover(lab: Lab) -> dict[str, int]:
    counts = {
        "parts_requeued": 0,
        "jobs_requeued": 0,
        "dispatch_followed": 0,
        "dispatch_interrupted": 0,
    }
    with unit_of_work(lab.engine) as session:
        for part in session.exec(select(Part).where(Part.state == PartState.PROCESSING)):
            part.state = PartState.QUEUED
            audit.record(
                session,
                SYSTEM,
                "part.requeued",
                "part",
                part.id,
                before={"state": PartState.PROCESSING},
                after={"state": PartState.QUEUED},
                reason=RESTART,
            )
            counts["parts_requeued"] += 1
        for job in session.exec(select(BuildJob).where(BuildJob.state == JobState.SLICING)):
            job.state = JobState.SLICE_QUEUED
            job.updated_at = utcnow()
            audit.record(
                session,
                SYSTEM,
                "job.requeued",
                "job",
                job.serial,
                before={"state": JobState.SLICING},
                after={"state": JobState.SLICE_QUEUED},
                reason=RESTART,
            )
            counts["jobs_requeued"] += 1
        dispatching = session.exec(
            select(BuildJob).where(BuildJob.state == JobState.DISPATCHING)
        ).all()
        pending = [
            (job.id, job.remote_name, session.get(Printer, job.printer_id)) for job in dispatching
        ]
    for job_id, remote, printer in pending:
        if (
            printer is not None
            and printer.name in lab.printers
            and lab.printers[printer.name].manual
        ):
            continue  # waits for the technician to download and start it; nothing was sent
        status = (
            lab.connector(printer.name).status()
            if printer and printer.name in lab.printers
            else None
        )
        running = (
            status is not None
            and status.state in (PrinterState.PRINTING, PrinterState.PAUSED, PrinterState.BUSY)
            and (status.job_file or "").rsplit("/", 1)[-1] == remote
        )
        with unit_of_work(lab.engine) as session:
            job = session.get(BuildJob, job_id)
            if job.state != JobState.DISPATCHING:
                continue
            if running:
                job.state = JobState.PRINTING
                job.started_at = job.started_at or utcnow()
                reason = f"{RESTART}; {printer.name} is printing {remote}, so it is followed again"
                counts["dispatch_followed"] += 1
            else:
                job.state = JobState.INTERRUPTED
                job.error = f"{RESTART} while sending to the printer; check the printer and resolve"
                reason = job.error
                counts["dispatch_interrupted"] += 1
            job.updated_at = utcnow()
            audit.record(
                session,
                SYSTEM,
                "job.recovered",
                "job",
                job.serial,
                before={"state": JobState.DISPATCHING},
                after={"state": job.state},
                reason=reason,
            )
    return counts
