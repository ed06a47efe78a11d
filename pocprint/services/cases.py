"""Orders (cases), mesh uploads and design approval.

Past 400 lines since orders also arrive with a PACS study and the hospital's order reference
(issue 11); the order's validation is shared by all three use cases. Splitting approval out
is a follow-up: postprocessing and other branches import it from here."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlmodel import Session, select

from pocprint.domain.anatomy import anatomy_problems, clean_parts
from pocprint.domain.cases import RegulatoryRoute, order_field_problems
from pocprint.domain.combinations import materials_for, same_material
from pocprint.domain.icd10 import icd10_problem, normalise_icd10
from pocprint.domain.imaging import imaging_problems
from pocprint.domain.roles import Permission
from pocprint.domain.states import JobState, PartState, Verdict
from pocprint.domain.steps import Step
from pocprint.faults import kill_point
from pocprint.mesh.errors import MeshError
from pocprint.mesh.read import check_upload, detect_format, load_parts
from pocprint.services import audit, gate, notifications, signatures
from pocprint.services import identifiers as identifier_service
from pocprint.services.actors import Actor
from pocprint.services.anatomy import taxonomy
from pocprint.services.errors import BadMesh, Invalid, NotApproved, NotFound, WrongState
from pocprint.services.lab import Lab
from pocprint.services.reopen import reopen_design, reopen_void_designs
from pocprint.services.transitions import move
from pocprint.store.db import unit_of_work
from pocprint.store.models import Approval, BuildJob, Case, Part, utcnow

APPROVED_DESIGN = gate.APPROVED_DESIGN


ORDER_FIELDS = (
    "patient_code",
    "indication",
    "device_type",
    "needed_by",
    "ordering_clinician",
    "ordering_contact",
    "icd10_code",
    "intended_use",
    "diagnostic_use",
    "anatomy",
    "procedure_date",
    "accession_number",
    "modality",
    "slice_thickness_mm",
    "segmentation_software",
    "segmentation_version",
    "regulatory_route",
    "prescriber_name",
    "prescriber_qualification",
    "design_characteristics",
    "material",
)
_TEXT = {
    "ordering_clinician",
    "ordering_contact",
    "segmentation_software",
    "segmentation_version",
    "prescriber_name",
    "prescriber_qualification",
    "design_characteristics",
    "material",
}


def _normalised(order: dict) -> dict:
    values = {k: order.get(k) for k in ORDER_FIELDS}
    values["regulatory_route"] = values["regulatory_route"] or RegulatoryRoute.IN_HOUSE.value
    for key in _TEXT:
        values[key] = (values[key] or "").strip()
    for key in ("accession_number", "modality"):
        values[key] = (values[key] or "").strip() or None
    values["anatomy"] = clean_parts(values["anatomy"] or [])
    return values


def order_problems_by_field(
    lab: Lab, order: dict, identifiers: dict | None = None
) -> dict[str, list[str]]:
    """Every problem of an order, by field; nothing is read or written (a form uses it to
    show all problems at once, next to their fields). `identifiers`: the patient's name and
    record number (given with the order, or decrypted from the case), which the patient
    code must not contain."""
    values = _normalised(order)
    # A lab with no validated combination at all cannot print anything; slicing says so.
    materials = (
        materials_for(lab.combinations, values["device_type"] or "") if lab.combinations else None
    )
    problems = order_field_problems(
        values, utcnow().date(), materials, identifier_service.code_rules(lab.settings), identifiers
    )
    if values["accession_number"] and not lab.settings.identifiers_key:
        problems.append(
            (
                "accession_number",
                "this site keeps no patient identifiers (no identifiers key), and the "
                "accession number leads to the patient in the RIS: leave it out",
            )
        )
    problems += [
        ("anatomy", p)
        for p in anatomy_problems(values["anatomy"], taxonomy(lab.settings.anatomy_file))
    ]
    if icd_problem := icd10_problem(values["icd10_code"]):
        problems.append(("icd10_code", icd_problem))
    out: dict[str, list[str]] = {}
    for field, message in problems:
        out.setdefault(field, []).append(message)
    return out


def _clean_order(lab: Lab, order: dict, identifiers: dict | None = None) -> dict:
    """Validate a whole order; all problems are reported at once, nothing is written."""
    unknown = set(order) - set(ORDER_FIELDS)
    if unknown:
        raise Invalid(f"unknown order fields: {', '.join(sorted(unknown))}")
    problems = order_problems_by_field(lab, order, identifiers)
    if problems:
        raise Invalid("; ".join(m for ms in problems.values() for m in ms), fields=problems)
    values = _normalised(order)
    values["icd10_code"] = normalise_icd10(values["icd10_code"])
    values["accession_number"] = identifier_service.normalised_accession(values["accession_number"])
    values["patient_code"] = values["patient_code"].strip()
    values["indication"] = values["indication"].strip()
    material = values["material"]
    values["material"] = next(
        (
            m
            for m in materials_for(lab.combinations, values["device_type"])
            if same_material(m, material)
        ),
        material,
    )
    return values


def _clean_imaging(imaging: dict | None) -> dict:
    """The imaging study from the PACS or a FHIR order (never identity); all problems at once."""
    if not imaging:
        return {}
    values = {k: v for k, v in imaging.items() if v not in (None, "", [])}
    problems: dict[str, list[str]] = {}
    for field, message in imaging_problems(values):
        problems.setdefault(field, []).append(message)
    if problems:
        raise Invalid("; ".join(m for ms in problems.values() for m in ms), fields=problems)
    return values


def create_case(
    lab: Lab,
    actor: Actor,
    *,
    patient_identifiers: dict | None = None,
    imaging: dict | None = None,
    order_reference: str | None = None,
    **order,
) -> int:
    """Open an order. Fields: ORDER_FIELDS (see domain/cases.py for what is required).

    `patient_identifiers` ({name, record_number, birth_date}) and the accession number are
    optional and only accepted where the site configured an identifiers key; they are stored
    encrypted, never logged, and the patient code may not contain them. `imaging` is the
    study as the PACS described it (domain/imaging.py); `order_reference` the hospital's own
    order id: the same hospital order never opens two cases.
    """
    actor.require(Permission.CREATE_CASE)
    study = _clean_imaging(imaging)
    identifiers = identifier_service.clean(patient_identifiers)
    values = _clean_order(lab, order, identifiers)
    accession = values.pop("accession_number")
    with unit_of_work(lab.engine) as session:
        if order_reference:
            existing = session.exec(
                select(Case.code).where(Case.order_reference == order_reference)
            ).first()
            if existing:
                raise WrongState(
                    f"the hospital order {order_reference} was already received as case {existing}"
                )
        case = Case(
            code=uuid.uuid4().hex[:32],
            created_by=actor.user_id,
            order_reference=order_reference,
            **values,
            **study,
        )
        identifier_service.seal(lab.settings, case, identifiers or {}, accession)
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
                **identifier_service.audit_view({**values, "accession_number": accession}),
                **study,
                # The hospital's order id links back to its records: kept in the case only.
                "hospital_order": "received" if order_reference else None,
                "patient_identifiers": "stored encrypted" if identifiers else None,
            },
        )
        notifications.case_awaits_review(session, case, "a new order")
        return case.id


def update_case(lab: Lab, actor: Actor, case_id: int, **changes) -> list[str]:
    """Change an order. A change to what the reviewer judged voids the review signature and
    sends the case back to review. Returns the names of the fields that changed."""
    actor.require(Permission.CREATE_CASE)
    with unit_of_work(lab.engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        if case.review_status == "rejected":
            raise WrongState(f"case {case.code} was rejected at review; it cannot be changed")
        stored = identifier_service.read_stored(lab.settings, case.patient_identifiers)
        before = {k: getattr(case, k) for k in ORDER_FIELDS}
        before["accession_number"] = (
            stored.get(identifier_service.ACCESSION) or case.accession_number
        )
        values = _clean_order(lab, {**before, **changes}, stored)
        changed = [k for k in ORDER_FIELDS if values[k] != before[k]]
        if not changed:
            return []
        reviewed_before = gate.order_content(case)
        for key in changed:
            if key != "accession_number":
                setattr(case, key, values[key])
        if "accession_number" in changed or case.accession_number:
            identifier_service.seal(lab.settings, case, stored, values["accession_number"])
        status_before = case.review_status
        if case.review_status == "info_requested" or (
            case.review_status == "approved" and gate.order_content(case) != reviewed_before
        ):
            case.review_status = "awaiting_review"
        audit.record(
            session,
            actor,
            "case.updated",
            "case",
            case.code,
            before={
                **identifier_service.audit_view({k: before[k] for k in changed}),
                "review_status": status_before,
            },
            after={
                **identifier_service.audit_view({k: values[k] for k in changed}),
                "review_status": case.review_status,
            },
        )
        if case.review_status == "awaiting_review" and status_before != "awaiting_review":
            notifications.case_awaits_review(session, case, "the order changed since the review")
        reopen_void_designs(
            session,
            actor,
            case,
            f"the order changed ({', '.join(changed)}): the design approval is void and must "
            "be signed again",
        )
        return changed


def read_identifiers(lab: Lab, actor: Actor, case_id: int) -> dict | None:
    """Decrypt a case's patient identifiers for someone allowed to see them; audited."""
    actor.require(Permission.VIEW_IDENTIFIERS)
    with unit_of_work(lab.engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        if case.patient_identifiers is None:
            return None
        values = identifier_service.decrypt(lab.settings, case.patient_identifiers)
        audit.record(session, actor, "case.identifiers_viewed", "case", case.code)
        return values


def upload_part(
    lab: Lab, actor: Actor, case_id: int, filename: str, upload_path: Path, label: str = ""
) -> int:
    """Validate the uploaded file, store it once by SHA-256 and queue it for analysis.

    Only the extension of the client's file name is used: names often carry patient identity.
    A file that fails validation leaves nothing behind: no blob, no row. Files up to
    `upload_full_check_bytes` are read completely here (bounded by that size), so a damaged
    or hostile one is refused at once.
    """
    actor.require(Permission.UPLOAD_MESH)
    try:
        fmt = detect_format(filename or "")
        check_upload(upload_path, fmt, lab.settings.max_upload_bytes)
        if upload_path.stat().st_size <= lab.settings.upload_full_check_bytes:
            load_parts(upload_path, fmt)
    except MeshError as exc:
        raise BadMesh(str(exc), exc.code) from exc
    with unit_of_work(lab.engine) as session:
        case = session.get(Case, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}")
        if case.review_status == gate.REJECTED:
            raise NotApproved(f"case {case.code} was rejected at appropriateness review")
        sha, size = lab.blobs.put_file(upload_path)
        kill_point("upload.blob_stored")
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
    lab.due(Step.PROCESS_PART, part_id)
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


def add_build_job(session: Session, **fields) -> BuildJob:
    """A new build job queued for slicing, with its device serial (which needs the row id)."""
    job = BuildJob(serial=uuid.uuid4().hex[:32], state=JobState.SLICE_QUEUED, **fields)
    session.add(job)
    session.flush()
    job.serial = next_serial(job)
    return job


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
        case = session.get(Case, part.case_id)
        if case.review_status == gate.REJECTED:
            raise NotApproved(f"case {case.code} was rejected at appropriateness review")
        if part.state == PartState.APPROVED and not gate.design_step(session, part, case).valid:
            # An approval that no longer holds (from before parts were reopened on the spot).
            reopen_design(session, actor, part, "the design approval no longer holds")
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
        signature = signatures.sign(
            session,
            actor,
            password,
            settings=lab.settings,
            meaning=APPROVED_DESIGN,
            entity="part",
            entity_id=part.id,
            content=gate.design_content(part, case),
            comment=comment,
        )
        approval = Approval(
            case_id=part.case_id,
            part_id=part.id,
            user_id=signature.user_id,
            signer_name=signature.signer_name,
            meaning=APPROVED_DESIGN,
            content_sha256=part.repaired_sha256,
            comment=signature.comment,
            signed_at=signature.signed_at,
            signature_id=signature.id,
        )
        session.add(approval)
        session.flush()
        move(
            session,
            part,
            PartState.APPROVED,
            actor=actor,
            action="design.approved",
            after={
                "signature": {
                    "signer": signature.signer_name,
                    "meaning": APPROVED_DESIGN,
                    "signed_at": approval.signed_at,
                    "content_sha256": approval.content_sha256,
                },
            },
            reason=comment or None,
        )
        extents = (part.analysis_after or {}).get("extents") or [0, 0, 0]
        job = add_build_job(
            session,
            case_id=part.case_id,
            part_id=part.id,
            approval_id=approval.id,
            profile_id=_choose_profile(lab, extents),
            extents=list(extents),
            mesh_sha256=part.repaired_sha256,
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
    kill_point("approval.committed")
    lab.due(Step.SLICE_JOB, job_id)
    return job_id


def require_current_approval(session: Session, job: BuildJob) -> Approval:
    """The job's mesh is the part's current repaired mesh and an approval row signs it.

    Slicing and dispatch now call gate.require_clinical_clearance, which also judges the
    design signature, the appropriateness review and the segmentation sign-off."""
    approval = session.get(Approval, job.approval_id)
    part = session.get(Part, job.part_id)
    if approval is None or part is None:
        raise NotApproved(f"job {job.serial} has no design approval")
    if approval.content_sha256 != job.mesh_sha256 or part.repaired_sha256 != job.mesh_sha256:
        raise NotApproved(
            f"job {job.serial}: the approved design no longer matches the mesh; approve it again"
        )
    return approval
