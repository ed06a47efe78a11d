"""Roles and what each may do. Checked by every service, whatever the entry point."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    TECHNICIAN = "technician"
    RADIOLOGIST = "radiologist"
    AUDITOR = "auditor"


class Permission(StrEnum):
    MANAGE_USERS = "manage_users"
    CREATE_CASE = "create_case"
    UPLOAD_MESH = "upload_mesh"
    CONFIRM_UNITS = "confirm_units"
    ACCEPT_REPAIR = "accept_repair"  # accept a needs-attention repair, with a reason
    APPROVE_DESIGN = "approve_design"
    OPERATE_PRINTERS = "operate_printers"
    RECORD_OUTCOME = "record_outcome"
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
            Permission.RECORD_OUTCOME,
            Permission.VIEW,
        }
    ),
    Role.RADIOLOGIST: frozenset({Permission.APPROVE_DESIGN, Permission.VIEW}),
    Role.AUDITOR: frozenset({Permission.VIEW}),
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
