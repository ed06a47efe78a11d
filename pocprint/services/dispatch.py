"""Plate-clear confirmation and dispatch: send the approved G-code to a free printer.

Order of a dispatch, each step recorded:
1. in one transaction the printer is claimed by a conditional update (enabled, idle, plate
   confirmed clear, no job on it; a database rule allows one active job per printer) and
   the job moves ready -> dispatching under a lease, so neither can be used twice;
2. the G-code is uploaded, and the printer's SHA-1 of the file and a re-download are compared
   with the approved file before anything starts;
3. the print is started and the printer must report it started.
A failure before the start puts the job back in the queue (after a back-off) and gives the
plate back: the printer was never touched. Once a start was sent the plate is never given
back automatically, and a failure that leaves it unclear whether the printer started marks
the job interrupted for a technician. Nothing is re-sent automatically.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import select

from pocprint.connectors.base import ConnectorError, PrinterState, RemoteFile
from pocprint.domain.combinations import validated_profiles
from pocprint.domain.dispatch import JobView, PrinterView, SliceOption, plan
from pocprint.domain.placement import BuildVolume
from pocprint.domain.roles import Permission
from pocprint.domain.states import ON_PRINTER, JobState
from pocprint.faults import kill_point
from pocprint.services import audit, leases
from pocprint.services.actors import SYSTEM, Actor
from pocprint.services.errors import NotApproved, NotFound, PrinterProblem
from pocprint.services.gate import require_clinical_clearance
from pocprint.services.lab import Lab
from pocprint.services.materials import dispatch_blocks
from pocprint.services.slicing import slice_fields
from pocprint.services.transitions import StaleState, move, update_if
from pocprint.store.db import read_session, unit_of_work
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
        if printer.state != PrinterState.IDLE or not update_if(
            session,
            printer,
            state=PrinterState.IDLE,
            plate_clear=True,
            plate_clear_by=actor.user_id,
            plate_clear_at=utcnow(),
            updated_at=utcnow(),
        ):
            raise PrinterProblem(f"{printer.name} is {printer.state}, not idle")
        audit.record(
            session,
            actor,
            "printer.plate_clear",
            "printer",
            printer.name,
            before={"plate_clear": False},
            after={"plate_clear": True},
        )
        kill_point("plate_clear.before_commit")
    lab.wake("dispatch")


def dispatch_ready_jobs(lab: Lab) -> int:
    """Pair ready jobs with free printers and send them; returns how many were started.
    Each send stands alone: one failing never holds up the rest of the batch."""
    claimed = _claim_pairs(lab)
    if claimed:
        kill_point("dispatch.claimed")
    started = 0
    for job_id, printer_name, lease in claimed:
        if lease is None:
            continue  # manual: the technician downloads the G-code and confirms the start
        try:
            started += bool(_send(lab, job_id, printer_name, lease))
        except Exception:  # the database went away mid-send: the lease runs out, the sweeper
            log.exception("job %s: sending to %s failed", job_id, printer_name)  # follows it
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
        select(BuildJob, Case.needed_by, Case.device_type, Case.material)
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
            retry_at=j.retry_at,
            material=material,
        )
        for j, needed_by, device_type, material in rows
    ]


def _cleared(session, job_id: int) -> bool:
    try:
        require_clinical_clearance(session, session.get(BuildJob, job_id))
    except NotApproved:
        return False
    return True


def _take_printer(session, printer_id: int) -> bool:
    """Claim a printer by consuming its plate-clear, only if it is still enabled, idle, its
    plate confirmed clear, and no job occupies it."""
    occupied = (
        select(BuildJob.id)
        .where(BuildJob.printer_id == Printer.id, BuildJob.state.in_(list(ON_PRINTER)))
        .exists()
    )
    result = session.execute(
        update(Printer)
        .where(
            Printer.id == printer_id,
            Printer.enabled,
            Printer.plate_clear,
            Printer.state == PrinterState.IDLE,
            ~occupied,
        )
        .values(plate_clear=False, updated_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount == 1


def _claim_pairs(lab: Lab) -> list[tuple[int, str, str | None]]:
    """Claim (job, printer) pairs; returns (job id, printer name, lease or None if manual)."""
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
        # (the gate audits each change of its decision, not every pass); so are jobs waiting
        # out a back-off after a failed send.
        jobs = [
            j
            for j in job_views(session)
            if (j.retry_at is None or j.retry_at <= now) and _cleared(session, j.id)
        ]
        if not jobs:
            return []
        views = printer_views(lab, session, printers, now)
        claimed = []
        for chosen in plan(views, jobs, now.date()):
            printer = session.get(Printer, chosen.printer.id)
            if not _take_printer(session, printer.id):
                continue  # changed since it was read: someone else's print, disabled...
            job = session.get(BuildJob, chosen.job.id)
            manual = lab.printers[printer.name].manual
            lease = None if manual else leases.new_token()
            sliced = session.exec(
                select(JobSlice).where(
                    JobSlice.job_id == job.id, JobSlice.profile_id == chosen.slice.profile_id
                )
            ).first()
            # The G-code sent is the slice made for this printer.
            fields = slice_fields(sliced, job.extents) if sliced is not None else {}
            remote = f"{job.serial}.gcode"
            try:
                move(
                    session,
                    job,
                    JobState.DISPATCHING,
                    actor=SYSTEM,
                    action="job.dispatching",
                    expected=JobState.READY,
                    after={
                        "printer": printer.name,
                        "printer_serial": printer.serial,
                        "plate_clear_by": printer.plate_clear_by,
                        "plate_clear_at": printer.plate_clear_at,
                        "remote_name": remote,
                        "profile": fields.get("profile_id", job.profile_id),
                        "material": fields.get("material", job.material),
                        "gcode_sha256": fields.get("gcode_sha256", job.gcode_sha256),
                        "urgent": job.urgent,
                        "manual": manual,
                        "lease": lease,
                    },
                    printer_id=printer.id,
                    remote_name=remote,
                    dispatched_at=utcnow(),
                    dispatched_by_plate_clear=printer.plate_clear_by,
                    dispatch_attempts=job.dispatch_attempts + 1,
                    lease_owner=lease,
                    lease_expires_at=(
                        utcnow() + timedelta(seconds=lab.settings.lease_s) if lease else None
                    ),
                    **fields,
                )
            except StaleState:
                # The job moved on (cancelled, re-sliced) since it was read: the printer's
                # plate is still clear, and this transaction holds the printer row.
                session.execute(
                    update(Printer).where(Printer.id == printer.id).values(plate_clear=True)
                )
                continue
            claimed.append((job.id, printer.name, lease))
        return claimed


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _history(remote_file: RemoteFile) -> dict:
    """The printer's own print history of the file before our start: a print is recognised
    as finished when this history grows, never by comparing the printer's clock with ours."""
    return {
        "prints_success": remote_file.prints_success,
        "prints_failure": remote_file.prints_failure,
        "last_print_at": remote_file.last_print_at,
    }


def _send(lab: Lab, job_id: int, printer_name: str, lease: str) -> bool:
    with read_session(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        remote, gcode_sha, gcode_sha1 = job.remote_name, job.gcode_sha256, job.gcode_sha1
        attempts = job.dispatch_attempts
    connector = lab.connector(printer_name)
    gcode_path = lab.blobs.path(gcode_sha)
    with leases.renewed(lab, BuildJob, job_id, lease, JobState.DISPATCHING):
        try:
            if not lab.blobs.verify(gcode_sha):
                raise ConnectorError("the stored G-code no longer matches its approved SHA-256")
            remote_file = connector.upload(gcode_path, remote)
            kill_point("dispatch.uploaded")
            if remote_file.sha1 != gcode_sha1:
                raise ConnectorError(
                    f"printer reports SHA-1 {remote_file.sha1} for the upload, "
                    f"expected {gcode_sha1}"
                )
            with tempfile.TemporaryDirectory(dir=lab.settings.work_dir) as tmp:
                copy = Path(tmp) / remote
                connector.download(remote, copy)
                if _file_sha256(copy) != gcode_sha:
                    raise ConnectorError(
                        "the file re-downloaded from the printer differs from the approved G-code"
                    )
        except Exception as exc:  # nothing was started: the plate is untouched
            with contextlib.suppress(Exception):  # never leave an unverified file behind
                connector.delete(remote)
            _back_to_queue(
                lab,
                job_id,
                lease,
                attempts,
                f"upload to {printer_name} failed: {_plain(exc)}",
                plate_untouched=True,
            )
            return False
        kill_point("dispatch.verified")
        verified = {
            "sha1": remote_file.sha1,
            "size": remote_file.size,
            "redownload_sha256": gcode_sha,
            "history_before": _history(remote_file),
            "evidence": "printer's own SHA-1 and a re-download, both matching the approved file",
        }
        try:
            connector.start(remote)
        except Exception as exc:
            status = connector.status()
            ours = (status.job_file or "").rsplit("/", 1)[-1] == remote
            if ours and status.state in (
                PrinterState.PRINTING,
                PrinterState.BUSY,
                PrinterState.PAUSED,
            ):
                log.warning("job %s: start reported %s but the printer is printing it", job_id, exc)
            elif status.state == PrinterState.OFFLINE or not isinstance(exc, ConnectorError):
                _mark_interrupted(
                    lab, job_id, lease, f"unclear whether {printer_name} started: {_plain(exc)}"
                )
                return False
            else:
                _back_to_queue(
                    lab,
                    job_id,
                    lease,
                    attempts,
                    f"{printer_name} did not start ({status.state}): {_plain(exc)}; a start "
                    "was attempted, so the plate must be confirmed clear again",
                    plate_untouched=False,
                )
                return False
        kill_point("dispatch.start_sent")
        with unit_of_work(lab.engine) as session:
            job = session.get(BuildJob, job_id)
            try:
                move(
                    session,
                    job,
                    JobState.PRINTING,
                    actor=SYSTEM,
                    action="job.started",
                    expected=JobState.DISPATCHING,
                    lease=lease,
                    after={"printer": printer_name, "verified": verified},
                    printer_sha1=remote_file.sha1,
                    started_at=utcnow(),
                    printer_report={"verified_upload": verified},
                    retry_at=None,
                    error=None,
                )
            except StaleState as exc:
                log.warning("job %s: start not recorded: %s", job_id, exc)
                return False
    kill_point("dispatch.recorded")
    return True


def _plain(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ConnectorError) else f"{type(exc).__name__}: {exc}"


def _back_to_queue(
    lab: Lab, job_id: int, lease: str, attempts: int, message: str, *, plate_untouched: bool
) -> None:
    """Nothing started: the job returns to the queue after a back-off. The plate is given
    back only when the printer was never touched (no start was sent)."""
    delay = leases.retry_delay(lab, attempts)
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        printer = session.get(Printer, job.printer_id) if job.printer_id else None
        try:
            move(
                session,
                job,
                JobState.READY,
                actor=SYSTEM,
                action="job.dispatch_failed",
                expected=JobState.DISPATCHING,
                lease=lease,
                before={"printer": printer.name if printer else None},
                after={"plate_given_back": plate_untouched, "retry_in_s": delay.total_seconds()},
                reason=message,
                printer_id=None,
                remote_name=None,
                error=message[:4000],
                retry_at=utcnow() + delay,
            )
        except StaleState as exc:
            log.warning("job %s: %s", job_id, exc)
            return
        if printer is not None and plate_untouched:
            update_if(session, printer, state=PrinterState.IDLE, plate_clear=True)
    log.warning("job %s: %s", job_id, message)


def _mark_interrupted(lab: Lab, job_id: int, lease: str, message: str) -> None:
    with unit_of_work(lab.engine) as session:
        try:
            move(
                session,
                session.get(BuildJob, job_id),
                JobState.INTERRUPTED,
                actor=SYSTEM,
                action="job.interrupted",
                expected=JobState.DISPATCHING,
                lease=lease,
                reason=message,
                error=message[:4000],
            )
        except StaleState as exc:
            log.warning("job %s: %s", job_id, exc)
