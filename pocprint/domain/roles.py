"""Roles and what each may do. Checked by every service, whatever the entry point."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    TECHNICIAN = "technician"
    PRESCRIBER = "prescriber"  # the requesting clinician
    RADIOLOGIST = "radiologist"
    LAB_MANAGER = "lab_manager"  # releases devices
    AUDITOR = "auditor"  # read-only


class Permission(StrEnum):
    MANAGE_USERS = "manage_users"
    CREATE_CASE = "create_case"
    UPLOAD_MESH = "upload_mesh"
    CONFIRM_UNITS = "confirm_units"
    ACCEPT_REPAIR = "accept_repair"  # accept a needs-attention repair, with a reason
    REVIEW_APPROPRIATENESS = "review_appropriateness"
    SIGN_SEGMENTATION = "sign_segmentation"
    APPROVE_DESIGN = "approve_design"
    MANAGE_CATALOG = "manage_catalog"  # appropriateness catalog rows, CSV import
    VIEW_IDENTIFIERS = "view_identifiers"  # decrypted patient identifiers, where a site stores them
    OPERATE_PRINTERS = "operate_printers"  # plate clear, pause, resume, cancel
    PRIORITISE_JOBS = "prioritise_jobs"  # urgent override, with a reason
    RECORD_OUTCOME = "record_outcome"
    MANAGE_MATERIALS = "manage_materials"  # material lots, loading a lot on a printer
    RECORD_MAINTENANCE = "record_maintenance"  # printer maintenance and calibration log
    RECORD_POST_PROCESSING = "record_post_processing"  # post-processing steps and QA
    RELEASE_DEVICE = "release_device"
    VIEW_AUDIT = "view_audit"  # auditor pages, recall queries, exports
    # The clinical outcome of a device, after the procedure: only the case's requesting
    # clinician (the service checks it is theirs).
    RECORD_CLINICAL_OUTCOME = "record_clinical_outcome"
    REPORT_COMPLAINT = "report_complaint"  # a complaint or incident against a device
    VIEW = "view"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset({Permission.MANAGE_USERS, Permission.VIEW}),
    Role.TECHNICIAN: frozenset(
        {
            Permission.CREATE_CASE,
            Permission.UPLOAD_MESH,
            Permission.CONFIRM_UNITS,
            Permission.ACCEPT_REPAIR,
            Permission.OPERATE_PRINTERS,
            Permission.PRIORITISE_JOBS,
            Permission.RECORD_OUTCOME,
            Permission.MANAGE_MATERIALS,
            Permission.RECORD_MAINTENANCE,
            Permission.RECORD_POST_PROCESSING,
            Permission.REPORT_COMPLAINT,
            Permission.VIEW,
        }
    ),
    Role.PRESCRIBER: frozenset(
        {
            Permission.CREATE_CASE,
            Permission.APPROVE_DESIGN,
            Permission.VIEW_IDENTIFIERS,
            Permission.RECORD_CLINICAL_OUTCOME,
            Permission.REPORT_COMPLAINT,
            Permission.VIEW,
        }
    ),
    Role.RADIOLOGIST: frozenset(
        {
            Permission.REVIEW_APPROPRIATENESS,
            Permission.SIGN_SEGMENTATION,
            Permission.APPROVE_DESIGN,
            Permission.VIEW_IDENTIFIERS,
            Permission.REPORT_COMPLAINT,
            Permission.VIEW,
        }
    ),
    Role.LAB_MANAGER: frozenset(
        {
            Permission.MANAGE_CATALOG,
            Permission.PRIORITISE_JOBS,
            Permission.MANAGE_MATERIALS,
            Permission.RECORD_MAINTENANCE,
            Permission.RELEASE_DEVICE,
            Permission.REPORT_COMPLAINT,
            Permission.VIEW_AUDIT,
            Permission.VIEW,
        }
    ),
    Role.AUDITOR: frozenset({Permission.VIEW_AUDIT, Permission.VIEW}),
}


def parse_roles(text: str | None) -> frozenset[Role]:
    """Roles are stored as a comma-separated list; unknown names are an error, not ignored."""
    if not text:
        return frozenset()
    return frozenset(Role(part.strip()) for part in text.split(",") if part.strip())


def format_roles(roles: set[Role] | frozenset[Role]) -> str:
    return ",".join(sorted(r.value for r in roles))


def permissions_of(roles: frozenset[Role]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for role in roles:
        granted |= GRANTS[role]
    return frozenset(granted)


def may(roles: frozenset[Role], permission: Permission) -> bool:
    return permission in permissions_of(roles)
