"""Sending one claimed job to its printer: the `send_job` step.

The planner (`services.dispatch`) claimed the job and the printer under a planning lease.
`send_job` takes that lease over for this process by a conditional update, so a duplicated
message finds the claim taken and does nothing, and a lost one leaves the planning lease to
run out (the sweeper then puts the job back in the queue: nothing reached the printer). Then:
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

from pocprint.connectors.base import ConnectorError, PrinterState, RemoteFile
from pocprint.domain.states import JobState
from pocprint.faults import kill_point
from pocprint.services import audit, leases
from pocprint.services.actors import SYSTEM
from pocprint.services.lab import Lab
from pocprint.services.transitions import StaleState, move, update_if
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Printer, utcnow

log = logging.getLogger(__name__)


def send_job(lab: Lab, job_id: int) -> bool:
    """Take over the planning claim of a job and send it; returns whether it started.
    False at once when the claim is gone (sent already, swept, cancelled)."""
    lease = _take_over(lab, job_id)
    if lease is None:
        return False
    kill_point("dispatch.send_claimed")
    return _send(lab, job_id, lease[0], lease[1])


def _take_over(lab: Lab, job_id: int) -> tuple[str, str] | None:
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        if job is None or job.state != JobState.DISPATCHING or not leases.is_plan(job.lease_owner):
            return None
        printer = session.get(Printer, job.printer_id) if job.printer_id else None
        if printer is None or printer.name not in lab.printers:
            return None
        planned, token = job.lease_owner, leases.new_token()
        if not update_if(
            session,
            job,
            state=JobState.DISPATCHING,
            lease=planned,
            lease_owner=token,
            lease_expires_at=utcnow() + timedelta(seconds=lab.settings.lease_s),
        ):
            return None
        audit.record(
            session,
            SYSTEM,
            "job.send_claimed",
            "job",
            job.serial,
            before={"lease": planned},
            after={"lease": token, "printer": printer.name},
        )
        return printer.name, token


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
