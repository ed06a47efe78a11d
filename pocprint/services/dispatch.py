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
from pocprint.domain.combinations import validated_profiles
from pocprint.domain.dispatch import JobView, PrinterView, SliceOption, plan
from pocprint.domain.placement import BuildVolume
from pocprint.domain.roles import Permission
from pocprint.domain.states import ON_PRINTER, JobState
from pocprint.services import audit
from pocprint.services.actors import SYSTEM, Actor
from pocprint.services.errors import NotApproved, NotFound, PrinterProblem
from pocprint.services.gate import require_clinical_clearance
from pocprint.services.lab import Lab
from pocprint.services.materials import dispatch_blocks
from pocprint.services.slicing import use_slice
from pocprint.services.steps import claim
from pocprint.store.db import unit_of_work
from pocprint.store.models import BuildJob, Case, JobSlice, Printer, utcnow

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
    started = 0
    for job_id, printer_name in claimed:
        if lab.printers[printer_name].manual:
            continue  # the technician downloads the G-code and confirms the start
        started += bool(_send(lab, job_id, printer_name))
    return started


def printer_views(lab: Lab, session, printers: list[Printer], now) -> list[PrinterView]:
    """Dispatch's view of printers: state, validated profiles per device type, loaded
    material, and any objection from the material and maintenance records."""
    device_types = {t for c in lab.combinations for t in c.device_types}
    views = []
    for p in printers:
        definition = lab.printers.get(p.name)
        if definition is None:
            continue
        offered = frozenset(p.profiles or [])
        validated = {
            device_type: validated_profiles(lab.combinations, p.name, p.model, offered, device_type)
            for device_type in device_types
        }
        views.append(
            PrinterView(
                id=p.id,
                name=p.name,
                idle=p.state == PrinterState.IDLE,
                plate_clear=p.plate_clear,
                profiles=offered,
                volume=BuildVolume(p.build_x, p.build_y, p.build_z),
                enabled=p.enabled,
                calibration_due=p.calibration_due,
                reachable=definition.manual or p.failed_polls == 0,
                material=p.material,
                validated=validated,
                blocks=tuple(dispatch_blocks(session, p.id, p.material, now)),
            )
        )
    return views


def job_views(session, states: tuple[str, ...] = (JobState.READY,)) -> list[JobView]:
    """Waiting jobs with their slices, needed-by date, device type and urgency."""
    rows = session.exec(
        select(BuildJob, Case.needed_by, Case.device_type, Case.material)  # issue 13: material
        .join(Case, Case.id == BuildJob.case_id)
        .where(BuildJob.state.in_(list(states)))
    ).all()
    if not rows:
        return []
    slices: dict[int, list[JobSlice]] = {}
    for s in session.exec(
        select(JobSlice)
        .where(JobSlice.job_id.in_([j.id for j, *_rest in rows]))
        .order_by(JobSlice.id)
    ).all():
        slices.setdefault(s.job_id, []).append(s)
    return [
        JobView(
            id=j.id,
            profile_id=j.profile_id,
            needed_by=needed_by,
            created_at=j.created_at,
            extents=tuple(j.extents or (0, 0, 0)),
            device_type=device_type,
            slices=tuple(
                SliceOption(
                    s.profile_id,
                    s.material,
                    tuple((s.placement or {}).get("extents_mm") or j.extents or (0, 0, 0)),
                )
                for s in slices.get(j.id, [])
            ),
            urgent=j.urgent,
            estimated_time_s=j.estimated_time_s,
            material=material,  # issue 13
        )
        for j, needed_by, device_type, material in rows
    ]


def _cleared(session, job_id: int) -> bool:
    try:
        require_clinical_clearance(session, session.get(BuildJob, job_id))
    except NotApproved:
        return False
    return True


def _claim_pairs(lab: Lab) -> list[tuple[int, str]]:
    now = utcnow()
    with unit_of_work(lab.engine) as session:
        printers = session.exec(
            select(Printer).where(
                Printer.enabled, Printer.plate_clear, Printer.state == PrinterState.IDLE
            )
        ).all()
        if not printers:
            return []
        # Jobs the clinical gate refuses are left out before planning, so they hold no printer
        # (the gate audits each change of its decision, not every pass).
        jobs = [j for j in job_views(session) if _cleared(session, j.id)]
        if not jobs:
            return []
        views = printer_views(lab, session, printers, now)
        claimed = []
        for chosen in plan(views, jobs, now.date()):
            job_view, printer_view = chosen.job, chosen.printer
            job = session.get(BuildJob, job_view.id)
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
            session.refresh(job)
            sliced = session.exec(
                select(JobSlice).where(
                    JobSlice.job_id == job.id, JobSlice.profile_id == chosen.slice.profile_id
                )
            ).first()
            if sliced is not None:
                use_slice(job, sliced)  # the G-code sent is the slice made for this printer
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
                    "profile": job.profile_id,
                    "material": job.material,
                    "gcode_sha256": job.gcode_sha256,
                    "urgent": job.urgent,
                    "manual": lab.printers[printer.name].manual,
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
