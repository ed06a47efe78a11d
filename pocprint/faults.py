"""Named kill points for the fault-injection suite (tests/test_faults.py).

`kill_point("dispatch.uploaded")` does nothing unless the process was started with
``POCPRINT_KILL_AT`` naming that point: then it notes the point in ``POCPRINT_KILL_MARKER``
(if set, fsynced, so the test knows where the process died) and SIGKILLs its own process,
as a power cut would at that exact line. Every point is declared in POINTS, so a misspelt
point fails at once instead of never firing. Nothing else in pocprint reads these variables.
"""

from __future__ import annotations

import os
import signal

POINTS: dict[str, str] = {
    # intake
    "upload.blob_stored": "an uploaded mesh is in the file store, its row not yet committed",
    "blob.temp_written": "a file is fully written to its temporary name, not yet renamed",
    "part.claimed": "a part was claimed for analysis and repair",
    "part.repaired_stored": "the repaired mesh is stored, the result not yet committed",
    "part.recorded": "the repair result is committed",
    # signatures
    "signature.before_commit": "a signature row is written, its transaction not committed",
    "approval.committed": "a design approval and its build job are committed",
    # slicing
    "job.slice_claimed": "a job was claimed for slicing",
    "job.slicer_running": "PrusaSlicer is running for the job",
    "job.gcode_stored": "a G-code is in the file store, the slice not yet recorded",
    "job.sliced": "the job's slices are committed and it is ready",
    # dispatch
    "plate_clear.before_commit": "a plate-clear confirmation is written, not committed",
    "dispatch.claimed": "a job and a printer were claimed for each other",
    "dispatch.send_claimed": "a sender took over the claimed job, nothing sent yet",
    "dispatch.uploaded": "the G-code is on the printer, not yet verified",
    "dispatch.verified": "the upload is verified, the start not yet sent",
    "dispatch.start_sent": "the printer accepted the start, pocprint has not recorded it",
    "dispatch.recorded": "the start is committed",
    # monitoring and technician actions
    "poll.read": "printer readings are taken, not yet applied",
    "poll.applied": "a poll's readings are committed",
    "cancel.sent": "the printer accepted a cancel, pocprint has not recorded it",
    "outcome.before_commit": "a build outcome is written, not committed",
    "release.before_commit": "a release signature is written, not committed",
    "sweep.found": "the sweeper found expired leases, nothing changed yet",
}

KILL_AT = "POCPRINT_KILL_AT"
KILL_MARKER = "POCPRINT_KILL_MARKER"


def kill_point(name: str) -> None:
    """SIGKILL this process here if the fault suite armed this point."""
    if name not in POINTS:
        raise KeyError(f"undeclared kill point {name!r}")
    armed = os.environ.get(KILL_AT)
    if not armed or name not in armed.split(","):
        return
    marker = os.environ.get(KILL_MARKER)
    if marker:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{name}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
