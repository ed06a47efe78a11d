"""Tables. Times are timezone-aware UTC (`utcnow`); JSON columns hold reports and printer answers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json(nullable: bool = True):
    return Field(default=None, sa_column=sa.Column(sa.JSON, nullable=nullable))


class User(SQLModel, table=True):
    __tablename__ = "user_account"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True, max_length=64)
    full_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=255)
    roles: str = Field(max_length=200)  # comma-separated Role values
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    # Lockout after repeated failed sign-ins (config [accounts]); cleared by a good sign-in.
    failed_logins: int = 0
    locked_until: datetime | None = None
    password_changed_at: datetime | None = None
    # A password someone else chose (first admin, new account, reset) is one-time: the user
    # must replace it before doing anything else.
    must_change_password: bool = Field(
        default=False, sa_column_kwargs={"server_default": sa.false()}
    )


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins for user names that have no account, counted like an account's, so
    the answer (and the lock message) never tells which accounts exist. Keyed by the SHA-256
    of the name typed, so nothing an attacker types is stored; stale rows are pruned."""

    __tablename__ = "sign_in_throttle"
    name_sha256: str = Field(primary_key=True, max_length=64)
    failed: int = 0
    locked_until: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class ApiToken(SQLModel, table=True):
    """A bearer token for the JSON API: named, expiring, revocable; stored as its SHA-256.
    It acts with its user's roles at the time of each request."""

    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    token_sha256: str = Field(unique=True, max_length=64)
    label: str = Field(default="", max_length=100)  # the token's name, e.g. "PACS bridge"
    created_at: datetime = Field(default_factory=utcnow)
    created_by: int | None = Field(default=None, foreign_key="user_account.id")
    # None never happens after 0010 (which gave older tokens 90 days); treated as expired.
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: int | None = Field(default=None, foreign_key="user_account.id")
    revoke_reason: str | None = Field(default=None, max_length=500)


class Case(SQLModel, table=True):
    __tablename__ = "lab_case"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, max_length=32)  # the lab's case number
    patient_code: str = Field(index=True, max_length=64)  # pseudonymous, never a name or MRN
    indication: str = Field(max_length=2000)
    device_type: str = Field(max_length=32)
    needed_by: date
    created_by: int = Field(foreign_key="user_account.id")
    created_at: datetime = Field(default_factory=utcnow)
    # The order (DOMAIN.md section 1, step 1).
    ordering_clinician: str = Field(default="", max_length=200)
    ordering_contact: str = Field(default="", max_length=100)
    icd10_code: str | None = Field(default=None, max_length=10)
    intended_use: str = Field(default="", max_length=32)
    diagnostic_use: bool = False
    anatomy: list | None = _json()  # [{region, subregion, structure, laterality, comment}]
    procedure_date: date | None = None
    # Legacy plain text (before 0010): the accession number now lives encrypted with the
    # patient identifiers; the start-up seals any plain one left (services/identifiers.py).
    accession_number: str | None = Field(default=None, max_length=64)
    # Keyed hash (HMAC-SHA256, key derived from the identifiers key) of the accession number:
    # what the review signature binds, so a changed number voids it without storing it.
    accession_hmac: str | None = Field(default=None, max_length=64)
    modality: str | None = Field(default=None, max_length=8)
    slice_thickness_mm: float | None = None
    segmentation_software: str = Field(default="", max_length=100)
    segmentation_version: str = Field(default="", max_length=50)
    regulatory_route: str = Field(default="in_house", max_length=32)
    prescriber_name: str = Field(default="", max_length=200)
    prescriber_qualification: str = Field(default="", max_length=200)
    design_characteristics: str = Field(default="", max_length=4000)
    # The material ordered (prescribed, for custom-made devices): only validated combinations
    # in this material are sliced and dispatched. None only for cases opened before 0008.
    material: str | None = Field(default=None, max_length=64)
    # Patient identifiers, only where a site stores them: a Fernet token (key from the site
    # configuration), never clear text. Decrypted only for VIEW_IDENTIFIERS, and audited.
    patient_identifiers: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # Appropriateness review: awaiting_review, info_requested, approved, rejected (final).
    review_status: str = Field(default="awaiting_review", max_length=20, index=True)
    # Imaging study from the hospital's PACS (C-FIND) or a FHIR order (issue 11); empty for an
    # order typed by hand. Never the patient's name or ID: those go to patient_identifiers.
    study_instance_uid: str | None = Field(default=None, max_length=64)
    study_date: date | None = None
    body_part: str | None = Field(default=None, max_length=64)
    imaging_series: list | None = _json()  # [{uid, number, description, modality, ...}]
    source_series_uid: str | None = Field(default=None, max_length=64)  # the series segmented
    imaging_source: str | None = Field(default=None, max_length=200)  # where the facts came from
    # The hospital's own order id (a FHIR ServiceRequest identifier, "system|value"): the same
    # order sent twice opens one case.
    order_reference: str | None = Field(default=None, max_length=255, unique=True)


class Part(SQLModel, table=True):
    """One uploaded mesh of a case, its analysis and its repair."""

    __tablename__ = "part"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="lab_case.id", index=True)
    label: str = Field(max_length=100)
    fmt: str = Field(max_length=8)
    source_sha256: str = Field(max_length=64, index=True)
    source_bytes: int
    state: str = Field(max_length=20, index=True)
    error: str | None = Field(default=None, max_length=2000)
    verdict: str | None = Field(default=None, max_length=20)
    repaired_sha256: str | None = Field(default=None, max_length=64)
    analysis_before: dict | None = _json()
    analysis_after: dict | None = _json()
    repair_report: dict | None = _json()
    attempts: int = 0
    # Units: STL/OBJ/PLY carry none. The guess is kept; the unit used and who chose it too
    # (units_decided_by is empty when the guess was clear-cut and applied automatically).
    units: str | None = Field(default=None, max_length=8)
    scale_to_mm: float | None = None
    units_guess: dict | None = _json()
    units_decided_by: int | None = Field(default=None, foreign_key="user_account.id")
    # A needs-attention repair may be used only when a technician accepts it with a reason.
    accepted_by: int | None = Field(default=None, foreign_key="user_account.id")
    accepted_reason: str | None = Field(default=None, max_length=2000)
    accepted_at: datetime | None = None
    uploaded_by: int = Field(foreign_key="user_account.id")
    uploaded_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None
    updated_at: datetime | None = Field(default_factory=utcnow)
    # A worker that claims the part holds it under a lease (services/leases.py); a transient
    # failure queues it again, not before retry_at.
    lease_owner: str | None = Field(default=None, max_length=120)
    lease_expires_at: datetime | None = None
    retry_at: datetime | None = None


class Approval(SQLModel, table=True):
    """A design approval bound to the exact repaired mesh it approved (by SHA-256)."""

    __tablename__ = "approval"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="lab_case.id", index=True)
    part_id: int = Field(foreign_key="part.id", index=True)
    user_id: int = Field(foreign_key="user_account.id")
    signer_name: str = Field(max_length=200)
    meaning: str = Field(max_length=100)
    content_sha256: str = Field(max_length=64)
    comment: str = Field(default="", max_length=2000)
    signed_at: datetime = Field(default_factory=utcnow)
    # The electronic signature ("approved design") this approval rests on; the gate judges it.
    signature_id: int | None = Field(default=None, foreign_key="signature.id")


class Printer(SQLModel, table=True):
    __tablename__ = "printer"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    serial: str = Field(max_length=64)
    connector: str = Field(max_length=32)
    url: str | None = Field(default=None, max_length=300)
    model: str = Field(default="", max_length=100)
    technology: str = Field(max_length=64)
    build_x: float
    build_y: float
    build_z: float
    nozzle_mm: float | None = None
    min_feature_mm: float | None = None  # smallest wall or detail the printer resolves
    material: str = Field(max_length=64)
    profiles: list | None = _json()
    calibration_due: date | None = None
    definition_sha256: str = Field(max_length=64)
    enabled: bool = True
    state: str = Field(default="offline", max_length=20)
    state_detail: str = Field(default="", max_length=200)
    error: str | None = Field(default=None, max_length=1000)
    job_file: str | None = Field(default=None, max_length=200)
    progress: float | None = None
    print_time_left_s: int | None = None
    temperatures: dict | None = _json()
    last_seen_at: datetime | None = None
    last_polled_at: datetime | None = None
    failed_polls: int = 0
    plate_clear: bool = False
    plate_clear_by: int | None = Field(default=None, foreign_key="user_account.id")
    plate_clear_at: datetime | None = None
    updated_at: datetime | None = Field(default_factory=utcnow)


ACTIVE_ON_PRINTER = "state IN ('dispatching', 'printing', 'interrupted')"


class BuildJob(SQLModel, table=True):
    """One attempt to build one device: slicing, dispatch, print and outcome."""

    __tablename__ = "build_job"
    # At most one job occupies a printer (dispatching, printing or interrupted).
    __table_args__ = (
        sa.Index(
            "uq_build_job_active_per_printer",
            "printer_id",
            unique=True,
            sqlite_where=sa.text(ACTIVE_ON_PRINTER),
            postgresql_where=sa.text(ACTIVE_ON_PRINTER),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    serial: str = Field(unique=True, max_length=32)  # device serial; names the G-code too
    case_id: int = Field(foreign_key="lab_case.id", index=True)
    part_id: int = Field(foreign_key="part.id", index=True)
    approval_id: int = Field(foreign_key="approval.id")
    profile_id: str = Field(max_length=100)
    state: str = Field(max_length=20, index=True)
    error: str | None = Field(default=None, max_length=4000)
    attempts: int = 0
    extents: list | None = _json()  # placed part size in mm, X Y Z
    mesh_sha256: str = Field(max_length=64)  # the approved repaired mesh that was sliced
    gcode_sha256: str | None = Field(default=None, max_length=64)
    gcode_sha1: str | None = Field(default=None, max_length=40)
    gcode_bytes: int | None = None
    slicer_name: str | None = Field(default=None, max_length=50)
    slicer_version: str | None = Field(default=None, max_length=50)
    profile_sha256: str | None = Field(default=None, max_length=64)
    slicer_config: dict | None = _json()
    estimated_time_s: int | None = None
    filament_mm: float | None = None
    filament_cm3: float | None = None
    filament_g: float | None = None
    sliced_at: datetime | None = None
    printer_id: int | None = Field(default=None, foreign_key="printer.id", index=True)
    remote_name: str | None = Field(default=None, max_length=100)
    printer_sha1: str | None = Field(default=None, max_length=40)
    printer_report: dict | None = _json()
    dispatched_by_plate_clear: int | None = Field(default=None, foreign_key="user_account.id")
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: float | None = None
    print_time_left_s: int | None = None
    cancel_reason: str | None = Field(default=None, max_length=1000)
    # Build preparation: how the part was laid on the bed, and the material of the slice sent.
    orientation: str = Field(default="stable", max_length=20)  # stable | as_designed
    orientation_reason: str | None = Field(default=None, max_length=1000)
    orientation_by: int | None = Field(default=None, foreign_key="user_account.id")
    placement: dict | None = _json()
    material: str | None = Field(default=None, max_length=64)
    # Urgent override of the needed-by order, always with a reason.
    urgent: bool = False
    urgent_reason: str | None = Field(default=None, max_length=1000)
    urgent_by: int | None = Field(default=None, foreign_key="user_account.id")
    urgent_at: datetime | None = None
    # Pause, resume, cancel, manual start and end: who, when, why (also in the audit log).
    controls: list | None = _json()
    outcome: str | None = Field(default=None, max_length=20)
    outcome_note: str | None = Field(default=None, max_length=2000)
    outcome_by: int | None = Field(default=None, foreign_key="user_account.id")
    outcome_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Slicing and dispatch run under a lease; transient failures wait until retry_at.
    lease_owner: str | None = Field(default=None, max_length=120)
    lease_expires_at: datetime | None = None
    retry_at: datetime | None = None
    dispatch_attempts: int = 0


class AuditEvent(SQLModel, table=True):
    """Append-only, hash-chained record of every change of state."""

    __tablename__ = "audit_event"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str = Field(max_length=64, index=True)
    action: str = Field(max_length=64, index=True)
    entity: str = Field(max_length=32)
    entity_id: str = Field(max_length=64, index=True)
    before: dict | None = _json()
    after: dict | None = _json()
    reason: str | None = Field(default=None, max_length=2000)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class AuditChainHead(SQLModel, table=True):
    """One row; locked while an event is appended so concurrent writers cannot fork the chain."""

    __tablename__ = "audit_chain_head"
    id: int = Field(default=1, primary_key=True)
    head_hash: str = Field(max_length=64)
    events: int = 0


class Signature(SQLModel, table=True):
    """An electronic signature: who, when, what it means, and the hash of exactly what was signed.

    Never edited or deleted. A withdrawal is a new signature whose `withdraws_id` names the
    one it withdraws. A signature whose content hash no longer matches the current content is
    void (see services/signatures.py).
    """

    __tablename__ = "signature"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    signer_name: str = Field(max_length=200)
    meaning: str = Field(max_length=64, index=True)
    entity: str = Field(max_length=32)
    entity_id: str = Field(max_length=64, index=True)
    content_sha256: str = Field(max_length=64)
    content: dict | None = _json()  # the canonical content that was hashed
    comment: str = Field(default="", max_length=2000)
    signed_at: datetime = Field(default_factory=utcnow)
    withdraws_id: int | None = Field(default=None, foreign_key="signature.id")


# --- fleet ---


class JobSlice(SQLModel, table=True):
    """One G-code of a build job for one validated profile. A job is sliced for every
    validated printer model and material it fits, so the dispatcher can choose a printer;
    the slice sent is copied onto the job."""

    __tablename__ = "job_slice"
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="build_job.id", index=True)
    profile_id: str = Field(max_length=100)
    profile_sha256: str = Field(max_length=64)
    material: str = Field(max_length=64)
    gcode_sha256: str = Field(max_length=64)
    gcode_sha1: str = Field(max_length=40)
    gcode_bytes: int
    slicer_name: str = Field(max_length=50)
    slicer_version: str = Field(max_length=50)
    slicer_config: dict | None = _json()
    estimated_time_s: int | None = None
    filament_mm: float | None = None
    filament_cm3: float | None = None
    filament_g: float | None = None
    placement: dict | None = _json()
    slicer_seconds: float | None = None
    sliced_at: datetime = Field(default_factory=utcnow)


# --- traceability (issue 6): materials, maintenance, post-processing, QA, delivery ---
# Per-build facts live here, keyed by build_job_id; rows are appended, never rewritten
# (a correction is a new row), so each table is its own history.


class MaterialLot(SQLModel, table=True):
    """A received lot of printing material (a spool, a resin bottle)."""

    __tablename__ = "material_lot"
    id: int | None = Field(default=None, primary_key=True)
    material: str = Field(max_length=64, index=True)  # as printers name it, e.g. "PLA"
    manufacturer: str = Field(max_length=100)
    lot_number: str = Field(max_length=20, index=True)  # GS1 (10) holds at most 20 characters
    expiry: date
    quantity_g: float
    opened_on: date | None = None
    received_by: int = Field(foreign_key="user_account.id")
    received_at: datetime = Field(default_factory=utcnow)
    note: str = Field(default="", max_length=1000)


class LotLoading(SQLModel, table=True):
    """A lot put on (or, with lot_id empty, taken off) a printer. The latest row is current."""

    __tablename__ = "lot_loading"
    id: int | None = Field(default=None, primary_key=True)
    printer_id: int = Field(foreign_key="printer.id", index=True)
    lot_id: int | None = Field(default=None, foreign_key="material_lot.id", index=True)
    loaded_by: int = Field(foreign_key="user_account.id")
    loaded_at: datetime = Field(default_factory=utcnow, index=True)


class MaintenanceEntry(SQLModel, table=True):
    """Printer maintenance and calibration log."""

    __tablename__ = "maintenance_entry"
    id: int | None = Field(default=None, primary_key=True)
    printer_id: int = Field(foreign_key="printer.id", index=True)
    kind: str = Field(max_length=20)  # calibration | maintenance
    description: str = Field(max_length=1000)
    result: str = Field(max_length=20)  # passed | failed | done
    performed_at: datetime
    next_due: date | None = None  # calibration: when the next one is due
    recorded_by: int = Field(foreign_key="user_account.id")
    recorded_at: datetime = Field(default_factory=utcnow)


class PostProcessStep(SQLModel, table=True):
    """One post-processing step done on a build (support removal, wash, cure, sterilisation)."""

    __tablename__ = "post_process_step"
    id: int | None = Field(default=None, primary_key=True)
    build_job_id: int = Field(foreign_key="build_job.id", index=True)
    step: str = Field(max_length=40)  # key in config/postprocessing.toml
    parameters: dict | None = _json()
    note: str = Field(default="", max_length=1000)
    operator_id: int = Field(foreign_key="user_account.id")
    performed_at: datetime = Field(default_factory=utcnow)


class QaMeasurement(SQLModel, table=True):
    """One dimensional check: designed vs measured value against a tolerance."""

    __tablename__ = "qa_measurement"
    id: int | None = Field(default=None, primary_key=True)
    build_job_id: int = Field(foreign_key="build_job.id", index=True)
    feature: str = Field(max_length=100)  # landmark or test-block dimension measured
    designed_mm: float
    measured_mm: float
    tolerance_mm: float
    passed: bool
    photo_sha256: str | None = Field(default=None, max_length=64)
    measured_by: int = Field(foreign_key="user_account.id")
    measured_at: datetime = Field(default_factory=utcnow)


class QaDisposition(SQLModel, table=True):
    """What was done with a build that failed QA: reprinted (new job) or scrapped."""

    __tablename__ = "qa_disposition"
    id: int | None = Field(default=None, primary_key=True)
    build_job_id: int = Field(foreign_key="build_job.id", unique=True)
    decision: str = Field(max_length=20)  # reprint | scrap
    reason: str = Field(max_length=2000)
    reprint_job_id: int | None = Field(default=None, foreign_key="build_job.id")
    decided_by: int = Field(foreign_key="user_account.id")
    decided_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """Hand-over of a released device: to whom, where, when."""

    __tablename__ = "delivery"
    id: int | None = Field(default=None, primary_key=True)
    build_job_id: int = Field(foreign_key="build_job.id", unique=True)
    delivered_to: str = Field(max_length=200)
    location: str = Field(default="", max_length=200)
    delivered_at: datetime
    recorded_by: int = Field(foreign_key="user_account.id")
    recorded_at: datetime = Field(default_factory=utcnow)
    note: str = Field(default="", max_length=1000)


# --- clinical gate ---


class AppropriatenessScenario(SQLModel, table=True):
    """One catalog row (DOMAIN.md section 2); edited by the lab, every change audited."""

    __tablename__ = "appropriateness_scenario"
    __table_args__ = (sa.UniqueConstraint("scenario_id", "catalog_version"),)
    id: int | None = Field(default=None, primary_key=True)
    scenario_id: str = Field(max_length=80)
    catalog_version: str = Field(max_length=80)
    specialty: str = Field(max_length=100)
    condition_group: str = Field(default="", max_length=200)
    scenario_text: str = Field(max_length=2000)
    rating: int | None = None
    band: str = Field(max_length=16)
    disagreement: bool = False
    rating_driven_by: str | None = Field(default=None, max_length=16)
    evidence_category: int | None = None
    print_complexity: str | None = Field(default=None, max_length=16)
    source_doi: str = Field(max_length=200)
    source_table: str = Field(default="", max_length=100)
    publication_year: int | None = None
    status: str = Field(max_length=16)
    active: bool = True
    updated_by: int | None = Field(default=None, foreign_key="user_account.id")
    updated_at: datetime = Field(default_factory=utcnow)


class AppropriatenessReview(SQLModel, table=True):
    """A radiologist's decision on a case; the scenario is copied so catalog edits never
    rewrite it. Approvals and rejections carry a "reviewed appropriateness" signature."""

    __tablename__ = "appropriateness_review"
    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="lab_case.id", index=True)
    decision: str = Field(max_length=16)
    scenario_id: str | None = Field(default=None, max_length=80)
    catalog_version: str | None = Field(default=None, max_length=80)
    scenario_text: str | None = Field(default=None, max_length=2000)
    rating: int | None = None
    band: str | None = Field(default=None, max_length=16)
    justification: str = Field(default="", max_length=2000)
    reviewer_id: int = Field(foreign_key="user_account.id")
    signature_id: int | None = Field(default=None, foreign_key="signature.id")
    created_at: datetime = Field(default_factory=utcnow)


# --- hospital integration (issue 11): notifications and the outbox ---


class Notification(SQLModel, table=True):
    """Something people must hear about (a part needs attention, a print failed...), written
    in the same transaction as the change that caused it. It carries no patient identity:
    only codes. The worker fans it out to the subscribed destinations (OutboxMessage)."""

    __tablename__ = "notification"
    id: int | None = Field(default=None, primary_key=True)
    event: str = Field(max_length=40, index=True)
    case_id: int | None = Field(default=None, foreign_key="lab_case.id", index=True)
    subject: str = Field(max_length=64)  # case code, part id or device serial it is about
    detail: dict | None = _json()  # codes and words only, never identity
    # One notification per fact (e.g. one "at risk" per job and needed-by date).
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    fanned_out_at: datetime | None = Field(default=None, index=True)


class OutboxMessage(SQLModel, table=True):
    """One delivery to one destination: an e-mail, a signed webhook call, or a DICOM C-STORE
    of a released device's mesh to the PACS. Sent by the worker after the transaction that
    wrote it, retried with back-off; failures stay visible on the admin outbox page."""

    __tablename__ = "outbox_message"
    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16, index=True)  # email | webhook | dicom
    destination: str = Field(max_length=255)  # address, webhook name, or PACS AE title
    notification_id: int | None = Field(default=None, foreign_key="notification.id", index=True)
    subject: str = Field(max_length=64, index=True)  # e.g. the device serial of an archive
    payload: dict | None = _json()
    state: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default_factory=utcnow, index=True)
    last_error: str | None = Field(default=None, max_length=2000)
    result: dict | None = _json()  # what the peer answered (e.g. the stored SOP instance UID)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    updated_at: datetime | None = Field(default_factory=utcnow)
    lease_owner: str | None = Field(default=None, max_length=120)
    lease_expires_at: datetime | None = None


# --- planning and outcomes (issue 12) ---


class DeviceOutcome(SQLModel, table=True):
    """What the requesting clinician says of a device after the procedure. Appended, never
    rewritten: a correction is a new row and the latest counts (the registry export)."""

    __tablename__ = "device_outcome"
    id: int | None = Field(default=None, primary_key=True)
    build_job_id: int = Field(foreign_key="build_job.id", index=True)
    used_as_intended: bool
    plan_changed: bool
    fit: str = Field(max_length=20)  # good | acceptable | poor | not_applicable
    time_saved_min: int | None = None  # the clinician's estimate; None: cannot say
    comment: str = Field(default="", max_length=2000)
    recorded_by: int = Field(foreign_key="user_account.id")
    recorded_at: datetime = Field(default_factory=utcnow)


class DeviceComplaint(SQLModel, table=True):
    """A complaint or an incident about a device (post-market surveillance record): found
    again by the device's lot, printer and profile. Appended, never rewritten."""

    __tablename__ = "device_complaint"
    id: int | None = Field(default=None, primary_key=True)
    build_job_id: int = Field(foreign_key="build_job.id", index=True)
    kind: str = Field(max_length=20)  # complaint | incident
    serious: bool = False  # a serious incident (MDR Art. 87) must also be reported
    description: str = Field(max_length=4000)
    reported_by: int = Field(foreign_key="user_account.id")
    reported_at: datetime = Field(default_factory=utcnow)


class WorkerHeartbeat(SQLModel, table=True):
    """A worker process (`pocprint worker`) says it is alive every few seconds; `pocprint
    status` and the admin status page show which are, and which holds the dispatcher."""

    __tablename__ = "worker_heartbeat"
    name: str = Field(primary_key=True, max_length=120)  # host:pid
    host: str = Field(max_length=100)
    pid: int
    queues: str = Field(max_length=100)  # comma-separated
    started_at: datetime = Field(default_factory=utcnow)
    seen_at: datetime = Field(default_factory=utcnow, index=True)
    dispatcher: bool = False  # holds the dispatcher lock (plans, polls, sweeps)


class LeaderChange(SQLModel, table=True):
    """Each time a worker took the dispatcher lock: the first start, or a takeover after its
    holder died or lost its database connection."""

    __tablename__ = "leader_change"
    id: int | None = Field(default=None, primary_key=True)
    lock: str = Field(max_length=32)
    holder: str = Field(max_length=120)
    previous: str | None = Field(default=None, max_length=120)
    taken_at: datetime = Field(default_factory=utcnow, index=True)
