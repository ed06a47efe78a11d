"""Worker step: slice approved designs with the validated profile."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from pathlib import Path

import trimesh
from sqlmodel import select

from pocprint.domain.placement import BuildVolume, fit_problems
from pocprint.domain.states import JobState
from pocprint.services import audit
from pocprint.services.actors import SYSTEM
from pocprint.services.cases import require_current_approval
from pocprint.services.errors import NotApproved
from pocprint.services.lab import Lab
from pocprint.services.steps import claim
from pocprint.slicing.prusaslicer import SlicerError, slice_mesh
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, utcnow

log = logging.getLogger(__name__)


def slice_waiting_jobs(lab: Lab) -> int:
    with read_session(lab.engine) as session:
        ids = session.exec(
            select(BuildJob.id).where(BuildJob.state == JobState.SLICE_QUEUED).order_by(BuildJob.id)
        ).all()
    return sum(1 for job_id in ids if slice_job(lab, job_id))


def _sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def slice_job(lab: Lab, job_id: int) -> bool:
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        if job is None or not claim(
            session,
            BuildJob,
            job_id,
            JobState.SLICE_QUEUED,
            JobState.SLICING,
            attempts=job.attempts + 1,
            updated_at=utcnow(),
        ):
            return False
        try:
            require_current_approval(session, job)
        except NotApproved as exc:
            _fail(session, job, str(exc))
            return True
        serial, profile_id, mesh_sha = job.serial, job.profile_id, job.mesh_sha256
    profile = lab.profiles.get(profile_id)
    try:
        if profile is None:
            raise SlicerError(f"profile {profile_id} is no longer in printers/profiles")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=lab.settings.work_dir) as tmp:
            # Files are named by device serial only: no patient identity reaches the slicer.
            mesh_path = Path(tmp) / f"{serial}.stl"
            lab.blobs.copy_out(mesh_sha, mesh_path)
            mesh = trimesh.load_mesh(mesh_path, process=False)
            extents = [float(v) for v in mesh.extents]
            bx, by = profile.bed_size
            problems = fit_problems(tuple(extents), BuildVolume(bx, by, profile.max_print_height))
            if problems:
                raise SlicerError("; ".join(problems))
            gcode_path = Path(tmp) / f"{serial}.gcode"
            prepared = time.perf_counter()
            result = slice_mesh(
                mesh_path,
                profile,
                gcode_path,
                center_xy=profile.bed_center,
                timeout_s=lab.settings.slicer_timeout_s,
            )
            sliced = time.perf_counter()
            sha1 = _sha1(gcode_path)
            gcode_sha, gcode_size = lab.blobs.put_file(gcode_path)
            stored = time.perf_counter()
    except SlicerError as exc:
        with unit_of_work(lab.engine) as session:
            _fail(session, session.get(BuildJob, job_id), str(exc))
        return True
    meta = result.metadata
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        job.state = JobState.READY
        job.extents = extents
        job.gcode_sha256, job.gcode_sha1, job.gcode_bytes = gcode_sha, sha1, gcode_size
        job.slicer_name, job.slicer_version = meta.slicer_name, result.slicer_version
        job.profile_sha256 = result.profile_sha256
        job.slicer_config = meta.config
        job.estimated_time_s = meta.estimated_time_s
        job.filament_mm, job.filament_cm3, job.filament_g = (
            meta.filament_mm,
            meta.filament_cm3,
            meta.filament_g,
        )
        job.sliced_at = job.updated_at = utcnow()
        audit.record(
            session,
            SYSTEM,
            "job.sliced",
            "job",
            job.serial,
            before={"state": JobState.SLICING},
            after={
                "state": JobState.READY,
                "gcode_sha256": gcode_sha,
                "slicer": f"{meta.slicer_name} {result.slicer_version}",
                "profile": profile_id,
                "profile_sha256": result.profile_sha256,
                "estimated_time_s": meta.estimated_time_s,
                "filament_g": meta.filament_g,
                "timings_s": {
                    "prepare": round(prepared - started, 4),
                    "slicer_process": round(result.duration_s, 4),
                    "slice_call": round(sliced - prepared, 4),
                    "store": round(stored - sliced, 4),
                },
            },
        )
    lab.wake("dispatch")
    return True


def _fail(session, job: BuildJob, message: str) -> None:
    job.state = JobState.SLICE_FAILED
    job.error = message
    job.updated_at = utcnow()
    audit.record(
        session,
        SYSTEM,
        "job.slice_failed",
        "job",
        job.serial,
        before={"state": JobState.SLICING},
        after={"state": JobState.SLICE_FAILED},
        reason=message,
    )
    log.warning("job %s: slicing failed: %s", job.serial, message)
