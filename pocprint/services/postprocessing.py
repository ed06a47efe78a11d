"""Post-processing steps, QA measurements and what happens to a build that fails QA.

Work starts on a build whose print was accepted by the technician (job completed, outcome
accepted). Each step is recorded with its parameters, operator and time; a measurement with
designed and measured values and the tolerance; a failed build is reprinted (a new build job
from the same approved design) or scrapped, with a reason.
"""

from __future__ import annotations

import io
import os
import tomllib
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlmodel import Session, select

from pocprint.config import REPO_ROOT
from pocprint.domain.checklists import (
    ChecklistError,
    DeviceChecklist,
    check_parameters,
    parse_catalogue,
    step_states,
    within_tolerance,
)
from pocprint.domain.roles import Permission
from pocprint.domain.states import JobState
from pocprint.domain.steps import Step
from pocprint.services import audit, notifications
from pocprint.services.actors import Actor
from pocprint.services.cases import add_build_job, require_current_approval
from pocprint.services.errors import Invalid, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.store.db import unit_of_work
from pocprint.store.models import (
    BuildJob,
    Case,
    PostProcessStep,
    QaDisposition,
    QaMeasurement,
    utcnow,
)

DEFAULT_CATALOGUE = REPO_ROOT / "config" / "postprocessing.toml"
MAX_PHOTO_BYTES = 20 * 1024 * 1024
DECISIONS = ("reprint", "scrap")


@lru_cache(maxsize=4)
def _catalogue(path: Path, mtime: float) -> dict[str, DeviceChecklist]:
    with path.open("rb") as fh:
        return parse_catalogue(tomllib.load(fh))


def catalogue() -> dict[str, DeviceChecklist]:
    path = Path(os.environ.get("POCPRINT_POSTPROCESSING_FILE", DEFAULT_CATALOGUE))
    try:
        return _catalogue(path, path.stat().st_mtime)
    except (OSError, tomllib.TOMLDecodeError, ChecklistError) as exc:
        raise WrongState(f"post-processing checklist {path} is unusable: {exc}") from exc


def checklist_for(device_type: str) -> DeviceChecklist:
    checklist = catalogue().get(device_type)
    if checklist is None:
        raise WrongState(f"no post-processing checklist for device type {device_type}")
    return checklist


def _job(session: Session, job_id: int) -> BuildJob:
    job = session.get(BuildJob, job_id)
    if job is None:
        raise NotFound(f"no build job {job_id}")
    return job


def require_workable(session: Session, job: BuildJob) -> None:
    if job.state != JobState.COMPLETED or job.outcome != "accepted":
        raise WrongState(
            f"build {job.serial} is {job.state}"
            + (f" ({job.outcome})" if job.outcome else "")
            + "; post-processing starts after the print is accepted"
        )
    if session.exec(select(QaDisposition).where(QaDisposition.build_job_id == job.id)).first():
        raise WrongState(f"build {job.serial} failed QA and was reprinted or scrapped")


def _when(performed_at: datetime | None) -> datetime:
    now = utcnow()
    performed_at = performed_at or now
    if performed_at.tzinfo is None:
        raise Invalid("time needs a time zone (UTC)")
    if performed_at > now:
        raise Invalid("the time is in the future")
    return performed_at


def record_step(
    lab: Lab,
    actor: Actor,
    job_id: int,
    step_key: str,
    parameters: dict,
    note: str = "",
    performed_at: datetime | None = None,
) -> int:
    actor.require(Permission.RECORD_POST_PROCESSING)
    performed_at = _when(performed_at)
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        require_workable(session, job)
        case = session.get(Case, job.case_id)
        checklist = checklist_for(case.device_type)
        step = next((s for s in checklist.steps if s.key == step_key), None)
        if step is None:
            raise Invalid(f"{step_key} is not a step of the {checklist.title.lower()} checklist")
        if step.kind != "form":
            raise Invalid(f"{step.title} is recorded by QA measurements")
        try:
            clean = check_parameters(step, dict(parameters or {}))
        except ChecklistError as exc:
            raise Invalid(f"{step.title}: {exc}") from exc
        was_ready = _ready(session, job)
        row = PostProcessStep(
            build_job_id=job.id,
            step=step.key,
            parameters=clean,
            note=(note or "").strip()[:1000],
            operator_id=actor.user_id,
            performed_at=performed_at,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "post.step",
            "job",
            job.serial,
            after={"step": step.key, "parameters": clean, "performed_at": performed_at},
            reason=row.note or None,
        )
        _tell_if_ready(session, job, was_ready)
        return row.id


def _photo(lab: Lab, photo: Path | None) -> str | None:
    """Store a QA photo by hash after checking it really is an image."""
    if photo is None:
        return None
    from PIL import Image, UnidentifiedImageError

    data = Path(photo).read_bytes()
    if not data:
        raise Invalid("the photo is empty")
    if len(data) > MAX_PHOTO_BYTES:
        raise Invalid("the photo is larger than 20 MB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            if image.format not in ("JPEG", "PNG", "WEBP"):
                raise Invalid("the photo must be a JPEG, PNG or WebP image")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise Invalid("the photo is not a readable image") from exc
    sha, _size = lab.blobs.put_file(Path(photo))
    return sha


def record_measurement(
    lab: Lab,
    actor: Actor,
    job_id: int,
    *,
    feature: str,
    designed_mm: float | None,
    measured_mm: float | None,
    tolerance_mm: float | None,
    photo: Path | None = None,
) -> int:
    actor.require(Permission.RECORD_POST_PROCESSING)
    feature = (feature or "").strip()
    if not feature or len(feature) > 100:
        raise Invalid("name the feature measured (up to 100 characters)")
    for name, value in (
        ("designed", designed_mm),
        ("measured", measured_mm),
        ("tolerance", tolerance_mm),
    ):
        if value is None or not (0 <= float(value) < 10_000):
            raise Invalid(f"{name} value must be a number of millimetres (0 to 10000)")
    if float(tolerance_mm) <= 0:
        raise Invalid("tolerance must be greater than zero")
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        require_workable(session, job)
        checklist_for(session.get(Case, job.case_id).device_type)
        passed = within_tolerance(float(designed_mm), float(measured_mm), float(tolerance_mm))
        was_ready = _ready(session, job)
        row = QaMeasurement(
            build_job_id=job.id,
            feature=feature,
            designed_mm=float(designed_mm),
            measured_mm=float(measured_mm),
            tolerance_mm=float(tolerance_mm),
            passed=passed,
            photo_sha256=_photo(lab, photo),
            measured_by=actor.user_id,
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "qa.measured",
            "job",
            job.serial,
            after={
                "feature": feature,
                "designed_mm": row.designed_mm,
                "measured_mm": row.measured_mm,
                "tolerance_mm": row.tolerance_mm,
                "passed": passed,
                "photo_sha256": row.photo_sha256,
            },
        )
        _tell_if_ready(session, job, was_ready)
        return row.id


def checklist_status(session: Session, job: BuildJob) -> list:
    case = session.get(Case, job.case_id)
    checklist = checklist_for(case.device_type)
    recorded = session.exec(
        select(PostProcessStep.step).where(PostProcessStep.build_job_id == job.id)
    ).all()
    measured = session.exec(
        select(QaMeasurement.feature, QaMeasurement.passed)
        .where(QaMeasurement.build_job_id == job.id)
        .order_by(QaMeasurement.measured_at, QaMeasurement.id)
    ).all()
    return step_states(checklist, recorded, [(f, p) for f, p in measured])


def _ready(session: Session, job: BuildJob) -> bool:
    steps = checklist_status(session, job)
    return bool(steps) and all(s.state == "done" for s in steps)


def _tell_if_ready(session: Session, job: BuildJob, was_ready: bool) -> None:
    """The record just became complete: the lab manager hears the device can be released."""
    session.flush()
    if not was_ready and _ready(session, job):
        notifications.device_ready_for_release(session, job)


def _rejected_build(job: BuildJob) -> bool:
    return job.state == JobState.COMPLETED and job.outcome == "rejected"


def decide_failed_build(
    lab: Lab, actor: Actor, job_id: int, decision: str, reason: str
) -> int | None:
    """Reprint or scrap a build that failed QA or whose print the technician rejected (a
    rejected build is never a dead end); returns the new job's id for a reprint."""
    actor.require(Permission.RECORD_POST_PROCESSING)
    if decision not in DECISIONS:
        raise Invalid("decision must be reprint or scrap")
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("a reason is required")
    with unit_of_work(lab.engine) as session:
        job = _job(session, job_id)
        if _rejected_build(job):
            if session.exec(
                select(QaDisposition).where(QaDisposition.build_job_id == job.id)
            ).first():
                raise WrongState(f"build {job.serial} was already reprinted or scrapped")
        else:
            require_workable(session, job)
            if not any(s.state == "failed" for s in checklist_status(session, job)):
                raise WrongState(
                    f"build {job.serial} has not failed QA and was not rejected; "
                    "only such a build is reprinted or scrapped"
                )
        reprint = None
        if decision == "reprint":
            require_current_approval(session, job)
            reprint = add_build_job(
                session,
                case_id=job.case_id,
                part_id=job.part_id,
                approval_id=job.approval_id,
                profile_id=job.profile_id,
                extents=job.extents,
                mesh_sha256=job.mesh_sha256,
            )
        row = QaDisposition(
            build_job_id=job.id,
            decision=decision,
            reason=reason,
            reprint_job_id=reprint.id if reprint else None,
            decided_by=actor.user_id,
        )
        session.add(row)
        audit.record(
            session,
            actor,
            f"qa.{decision}",
            "job",
            job.serial,
            after={"decision": decision, "reprint": reprint.serial if reprint else None},
            reason=reason,
        )
        if reprint is not None:
            audit.record(
                session,
                actor,
                "job.created",
                "job",
                reprint.serial,
                after={
                    "state": reprint.state,
                    "profile": reprint.profile_id,
                    "mesh_sha256": reprint.mesh_sha256,
                    "reprint_of": job.serial,
                },
                reason=reason,
            )
        new_id = reprint.id if reprint else None
    if new_id is not None:
        lab.due(Step.SLICE_JOB, new_id)
    return new_id
