"""Orders (cases), mesh uploads and design approval."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

from sqlmodel import Session, select

from pocprint.domain.cases import case_problems
from pocprint.domain.roles import Permission
from pocprint.domain.states import JobState, PartState, Verdict, advance_part
from pocprint.mesh.errors import MeshError
from pocprint.mesh.read import check_upload, detect_format
from pocprint.services import audit
from pocprint.services.actors import Actor
from pocprint.services.errors import BadMesh, Invalid, NotApproved, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.services.users import reauthenticate
from pocprint.store.db import unit_of_work
from pocprint.store.models import Approval, BuildJob, Case, Part, utcnow

APPROVED_DESIGN = "approved design"


def create_case(
    lab: Lab,
    actor: Actor,
    *,
    patient_code: str,
    indication: str,
    device_type: str,
    needed_by: date | None,
) -> int:
    actor.require(Permission.CREATE_CASE)
    problems = case_problems(patient_code, indication, device_type, needed_by, utcnow().date())
    if problems:
        raise Invalid("; ".join(problems))
    with unit_of_work(lab.engine) as session:
        case = Case(
            code=uuid.uuid4().hex[:32],
            patient_code=patient_code.strip(),
            indication=indication.strip(),
            device_type=device_type,
            needed_by=needed_by,
            created_by=actor.user_id,
        )
        session.add(case)
        session.flush()
        case.code = f"C{case.created_at:%Y}-{case.id:05d}"
        audit.record(
            session,
            actor,
            "case.created",
            "case",
            case.code,
            after={
                "patient_code": case.patient_code,
                "indication": case.indication,
                "device_type": device_type,
                "needed_by": needed_by,
            },
        )
        return case.id


def upload_part(
    lab: Lab, actor: Actor, case_id: int, filename: str, upload_path: Path, label: str = ""
) -> int:
    """Validate the uploaded file, store it once by SHA-256 and queue it for analysis.

    Only the extension of the client's file name is used: names often carry patient identity.
    A file that fails validation leaves nothing behind: no blob, no row.
    """
    actor.require(Permission.UPLOAD_MESH)
    try:
        fmt = detect_format(filename or "")
        check_upload(upload_path, fmt, lab.settings.max_upload_bytes)
    except MeshError as exc:
        raise BadMesh(str(exc), exc.code) from exc
    with unit_of_work(lab.engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        sha, size = lab.blobs.put_file(upload_path)
        count = len(session.exec(select(Part.id).where(Part.case_id == case_id)).all())
        part = Part(
            case_id=case_id,
            label=(label or "").strip()[:100] or f"Part {count + 1}",
            fmt=fmt,
            source_sha256=sha,
            source_bytes=size,
            state=PartState.QUEUED,
            uploaded_by=actor.user_id,
        )
        session.add(part)
        session.flush()
        audit.record(
            session,
            actor,
            "part.uploaded",
            "part",
            part.id,
            after={
                "case": case.code,
                "label": part.label,
                "format": fmt,
                "sha256": sha,
                "bytes": size,
            },
        )
        part_id = part.id
    lab.wake("mesh")
    return part_id


def _choose_profile(lab: Lab, extents: list[float]) -> str:
    """The first validated profile, offered by some printer, whose bed the part fits."""
    offered = sorted({p for d in lab.printers.values() for p in d.profiles})
    if not offered:
        raise WrongState("no printer offers a validated slicer profile")
    for profile_id in offered:
        profile = lab.profiles[profile_id]
        bx, by = profile.bed_size
        if extents[0] <= bx and extents[1] <= by and extents[2] <= profile.max_print_height:
            return profile_id
    return offered[0]  # slicing will refuse it with the exact reason


def next_serial(job: BuildJob) -> str:
    return f"D{job.created_at:%Y}-{job.id:06d}"


def approve_design(lab: Lab, actor: Actor, part_id: int, password: str, comment: str = "") -> int:
    """Sign the repaired mesh as the design to print; queue it for slicing.

    The approval is bound to the SHA-256 of the repaired mesh: slicing and dispatch check that
    binding again, so a changed mesh can never be printed under an old approval.
    """
    actor.require(Permission.APPROVE_DESIGN)
    with unit_of_work(lab.engine) as session:
        part = session.get(Part, part_id)
        if part is None:
            raise NotFound(f"no part {part_id}")
        if part.state != PartState.PROCESSED:
            raise WrongState(
                f"part is {part.state}; only an analysed, repaired part can be approved"
            )
        accepted = part.verdict == Verdict.NEEDS_ATTENTION and part.accepted_by is not None
        if not (part.verdict == Verdict.REPAIRED or accepted) or not part.repaired_sha256:
            raise NotApproved(
                "the repair needs attention and no technician has accepted it: "
                + "; ".join((part.repair_report or {}).get("reasons", []) or ["no repaired mesh"])
            )
        signer = reauthenticate(session, actor, password)
        approval = Approval(
            case_id=part.case_id,
            part_id=part.id,
            user_id=signer.id,
            signer_name=signer.full_name,
            meaning=APPROVED_DESIGN,
            content_sha256=part.repaired_sha256,
            comment=comment.strip(),
        )
        session.add(approval)
        part.state = advance_part(PartState(part.state), PartState.APPROVED)
        session.flush()
        extents = (part.analysis_after or {}).get("extents") or [0, 0, 0]
        job = BuildJob(
            serial=uuid.uuid4().hex[:32],
            case_id=part.case_id,
            part_id=part.id,
            approval_id=approval.id,
            profile_id=_choose_profile(lab, extents),
            state=JobState.SLICE_QUEUED,
            extents=list(extents),
            mesh_sha256=part.repaired_sha256,
        )
        session.add(job)
        session.flush()
        job.serial = next_serial(job)
        audit.record(
            session,
            actor,
            "design.approved",
            "part",
            part.id,
            before={"state": PartState.PROCESSED},
            after={
                "state": PartState.APPROVED,
                "signature": {
                    "signer": signer.full_name,
                    "meaning": APPROVED_DESIGN,
                    "signed_at": approval.signed_at,
                    "content_sha256": approval.content_sha256,
                },
            },
            reason=comment or None,
        )
        audit.record(
            session,
            actor,
            "job.created",
            "job",
            job.serial,
            after={"state": job.state, "profile": job.profile_id, "mesh_sha256": job.mesh_sha256},
        )
        job_id = job.id
    lab.wake("slicing")
    return job_id


def require_current_approval(session: Session, job: BuildJob) -> Approval:
    """The gate: the job's mesh is the part's current repaired mesh and an approval signs it."""
    approval = session.get(Approval, job.approval_id)
    part = session.get(Part, job.part_id)
    if approval is None or part is None:
        raise NotApproved(f"job {job.serial} has no design approval")
    if approval.content_sha256 != job.mesh_sha256 or part.repaired_sha256 != job.mesh_sha256:
        raise NotApproved(
            f"job {job.serial}: the approved design no longer matches the mesh; approve it again"
        )
    return approval
