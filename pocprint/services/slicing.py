"""Worker step: slice approved designs with every validated profile they may use.

A job is sliced once per validated profile (printer model + material) for its device type
that some printer offers, so the dispatcher can choose a printer; each slice is placed and
checked against width, depth and height first. A part that fits nowhere is refused before
PrusaSlicer runs; any slicer failure fails the job with PrusaSlicer's own message.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trimesh
from sqlalchemy import or_
from sqlmodel import delete, select

from pocprint.domain.states import JobState
from pocprint.domain.steps import Step
from pocprint.faults import kill_point
from pocprint.services import leases
from pocprint.services.actors import SYSTEM
from pocprint.services.build_planning import Candidate, candidates, feature_warning, place
from pocprint.services.errors import NotApproved
from pocprint.services.gate import require_clinical_clearance
from pocprint.services.lab import Lab
from pocprint.services.transitions import StaleState, move
from pocprint.slicing.prusaslicer import SlicerError, SliceResult, slice_mesh
from pocprint.store.db import read_session, unit_of_work
from pocprint.store.models import BuildJob, Case, JobSlice, Part, utcnow

log = logging.getLogger(__name__)


class NothingToSlice(SlicerError):
    """Refused before slicing: no validated combination, or the part fits no printer."""


def slice_waiting_jobs(lab: Lab) -> int:
    return sum(1 for job_id in waiting_jobs(lab) if slice_job(lab, job_id))


def waiting_jobs(lab: Lab) -> list[int]:
    """Jobs queued for slicing whose back-off has passed, oldest first."""
    with read_session(lab.engine) as session:
        return session.exec(
            select(BuildJob.id)
            .where(
                BuildJob.state == JobState.SLICE_QUEUED,
                or_(BuildJob.retry_at.is_(None), BuildJob.retry_at <= utcnow()),
            )
            .order_by(BuildJob.id)
        ).all()


def _sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Slice:
    candidate: Candidate
    placement: dict
    result: SliceResult
    gcode_sha256: str
    gcode_sha1: str
    gcode_bytes: int


def slice_job(lab: Lab, job_id: int) -> bool:
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        if job is None:
            return False
        lease = leases.claim(
            lab,
            session,
            job,
            JobState.SLICING,
            expected=JobState.SLICE_QUEUED,
            action="job.slicing",
            attempts=job.attempts + 1,
        )
        if lease is None:
            return False
        try:
            require_clinical_clearance(session, job, step="slicing")
        except NotApproved as exc:
            _fail(session, job, lease, str(exc))
            return True
        serial, mesh_sha, orientation = job.serial, job.mesh_sha256, job.orientation
        attempts = job.attempts
        case = session.get(Case, job.case_id)
        device_type, material = case.device_type, case.material
        part = session.get(Part, job.part_id)
        analysis = part.analysis_after if part is not None else None
    kill_point("job.slice_claimed")
    refused: dict[str, list[str]] = {}
    try:
        with leases.renewed(lab, BuildJob, job_id, lease, JobState.SLICING):
            slices, timings = _slice_all(
                lab, serial, mesh_sha, orientation, device_type, material, analysis, refused
            )
    except SlicerError as exc:
        if exc.transient:
            _retry_or_fail(lab, job_id, lease, attempts, str(exc))
        else:
            with unit_of_work(lab.engine) as session:
                _fail(session, session.get(BuildJob, job_id), lease, str(exc), refused=refused)
        return True
    except Exception as exc:  # transient: the disk, the memory or a library failed this time
        log.exception("job %s: slicing failed (attempt %d)", serial, attempts)
        _retry_or_fail(lab, job_id, lease, attempts, f"{type(exc).__name__}: {exc}")
        return True
    if _record(lab, job_id, lease, slices, refused, timings):
        kill_point("job.sliced")
        lab.due(Step.DISPATCH)
    return True


def _slice_all(lab, serial, mesh_sha, orientation, device_type, material, analysis, refused):
    """Place and slice the part for every validated candidate; returns (slices, timings)."""
    started = time.perf_counter()
    # Seconds per phase, summed over the slices (the spine benchmark splits overhead by them).
    timings = dict.fromkeys(("prepare", "slice_call", "slicer_process", "store"), 0.0)
    # Only combinations in the material the order names (any, for orders that name none).
    options = candidates(lab.combinations, lab.printers, lab.profiles, device_type, material)
    if not options:
        raise NothingToSlice(
            f"no validated combination of printer, profile and "
            f"{material or 'material'} for {device_type.replace('_', ' ')}s; the lab "
            "must add one to printers/validated.toml"
        )
    slices = []
    with tempfile.TemporaryDirectory(dir=lab.settings.work_dir) as tmp:
        # Files are named by device serial only: no patient identity reaches the slicer.
        mesh_path = Path(tmp) / f"{serial}.stl"
        lab.blobs.copy_out(mesh_sha, mesh_path)
        mesh = trimesh.load_mesh(mesh_path)
        for n, option in enumerate(options):
            phase = time.perf_counter()
            placed, placement, problems = place(mesh, orientation, option.volume)
            if problems:
                refused[option.profile.id] = problems
                continue
            placement["min_feature_mm"] = option.min_feature_mm
            placement["warning"] = feature_warning(analysis, option)
            placed_path = Path(tmp) / f"{serial}-{n}.stl"
            placed.export(placed_path)
            gcode_path = Path(tmp) / f"{serial}-{n}.gcode"
            timings["prepare"] += time.perf_counter() - phase
            phase = time.perf_counter()
            try:
                result = slice_mesh(
                    placed_path,
                    option.profile,
                    gcode_path,
                    center_xy=option.profile.bed_center,
                    timeout_s=lab.settings.slicer_timeout_s,
                )
            except SlicerError as exc:
                raise SlicerError(
                    f"{option.profile.id}: {exc}", returncode=exc.returncode, log=exc.log
                ) from exc
            timings["slice_call"] += time.perf_counter() - phase
            timings["slicer_process"] += result.duration_s
            phase = time.perf_counter()
            sha1 = _sha1(gcode_path)
            sha256, size = lab.blobs.put_file(gcode_path)
            kill_point("job.gcode_stored")
            timings["store"] += time.perf_counter() - phase
            slices.append(_Slice(option, placement, result, sha256, sha1, size))
    if not slices:
        raise NothingToSlice(
            "refused before slicing, the part fits no validated printer ("
            + orientation.replace("_", " ")
            + " orientation): "
            + "; ".join(f"{pid}: {', '.join(p)}" for pid, p in refused.items())
        )
    timings["all_slices"] = time.perf_counter() - started
    return slices, timings


def _slice_row(job_id: int, s: _Slice) -> JobSlice:
    meta = s.result.metadata
    return JobSlice(
        job_id=job_id,
        profile_id=s.candidate.profile.id,
        profile_sha256=s.result.profile_sha256,
        material=s.candidate.material,
        gcode_sha256=s.gcode_sha256,
        gcode_sha1=s.gcode_sha1,
        gcode_bytes=s.gcode_bytes,
        slicer_name=meta.slicer_name,
        slicer_version=s.result.slicer_version,
        slicer_config=meta.config,
        estimated_time_s=meta.estimated_time_s,
        filament_mm=meta.filament_mm,
        filament_cm3=meta.filament_cm3,
        filament_g=meta.filament_g,
        placement=s.placement,
        slicer_seconds=round(s.result.duration_s, 3),
    )


def _record(
    lab: Lab, job_id: int, lease: str, slices: list[_Slice], refused: dict, timings: dict
) -> bool:
    """Commit the slices and make the job ready, only while this worker still holds it (a
    job cancelled meanwhile stays cancelled; its G-code is simply never used)."""
    rows = [_slice_row(job_id, s) for s in slices]
    first = rows[0]
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        try:
            move(
                session,
                job,
                JobState.READY,
                actor=SYSTEM,
                action="job.sliced",
                expected=JobState.SLICING,
                lease=lease,
                after={
                    "gcode_sha256": first.gcode_sha256,
                    "slicer": f"{first.slicer_name} {first.slicer_version}",
                    "profile": first.profile_id,
                    "profile_sha256": first.profile_sha256,
                    "estimated_time_s": first.estimated_time_s,
                    "filament_g": first.filament_g,
                    "slices": [
                        {
                            "profile": s.candidate.profile.id,
                            "material": s.candidate.material,
                            "gcode_sha256": s.gcode_sha256,
                            "printers": list(s.candidate.printers),
                            "extents_mm": s.placement["extents_mm"],
                            "warning": s.placement.get("warning"),
                        }
                        for s in slices
                    ],
                    "refused": refused,
                    "timings_s": {k: round(v, 4) for k, v in timings.items()},
                },
                error=None,
                retry_at=None,
                sliced_at=utcnow(),
                **slice_fields(first, job.extents),
            )
        except StaleState as exc:
            log.warning("job %s: slices discarded: %s", job.serial, exc)
            return False
        session.exec(delete(JobSlice).where(JobSlice.job_id == job_id))
        session.add_all(rows)
    return True


def slice_fields(chosen: JobSlice, extents: list | None) -> dict:
    """The job's fields that name one slice as its G-code: the record then names exactly
    what is sent (passed to the transition that chooses it)."""
    return dict(
        profile_id=chosen.profile_id,
        material=chosen.material,
        profile_sha256=chosen.profile_sha256,
        gcode_sha256=chosen.gcode_sha256,
        gcode_sha1=chosen.gcode_sha1,
        gcode_bytes=chosen.gcode_bytes,
        slicer_name=chosen.slicer_name,
        slicer_version=chosen.slicer_version,
        slicer_config=chosen.slicer_config,
        estimated_time_s=chosen.estimated_time_s,
        filament_mm=chosen.filament_mm,
        filament_cm3=chosen.filament_cm3,
        filament_g=chosen.filament_g,
        placement=chosen.placement,
        extents=list((chosen.placement or {}).get("extents_mm") or extents or []),
    )


def _fail(session, job: BuildJob, lease: str, message: str, refused: dict | None = None) -> None:
    try:
        move(
            session,
            job,
            JobState.SLICE_FAILED,
            actor=SYSTEM,
            action="job.slice_failed",
            expected=JobState.SLICING,
            lease=lease,
            after={"refused": refused or {}},
            reason=message[:2000],
            error=message[:4000],
        )
    except StaleState as exc:
        log.warning("job %s: failure not recorded: %s", job.serial, exc)
        return
    log.warning("job %s: slicing failed: %s", job.serial, message)


def _retry_or_fail(lab: Lab, job_id: int, lease: str, attempts: int, message: str) -> None:
    with unit_of_work(lab.engine) as session:
        job = session.get(BuildJob, job_id)
        if attempts >= lab.settings.max_attempts:
            _fail(session, job, lease, f"slicing failed {attempts} times; last error: {message}")
            return
        delay = leases.retry_delay(lab, attempts)
        try:
            move(
                session,
                job,
                JobState.SLICE_QUEUED,
                actor=SYSTEM,
                action="job.retry",
                expected=JobState.SLICING,
                lease=lease,
                after={"retry_in_s": delay.total_seconds(), "attempt": attempts},
                reason=message[:2000],
                error=f"attempt {attempts} failed, trying again: {message}"[:4000],
                retry_at=utcnow() + delay,
            )
        except StaleState as exc:
            log.warning("job %s: %s", job.serial, exc)
