"""issue 12 — planning and outcomes: the requesting clinician's outcome per device, and
complaints and incidents recorded against a device (post-market record)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "device_outcome",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_job_id", sa.Integer(), nullable=False),
        sa.Column("used_as_intended", sa.Boolean(), nullable=False),
        sa.Column("plan_changed", sa.Boolean(), nullable=False),
        sa.Column("fit", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("time_saved_min", sa.Integer(), nullable=True),
        sa.Column("comment", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["build_job_id"], ["build_job.id"]),
        sa.ForeignKeyConstraint(["recorded_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_device_outcome_build_job_id"), "device_outcome", ["build_job_id"], unique=False
    )
    op.create_table(
        "device_complaint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_job_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("serious", sa.Boolean(), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("reported_by", sa.Integer(), nullable=False),
        sa.Column("reported_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["build_job_id"], ["build_job.id"]),
        sa.ForeignKeyConstraint(["reported_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_device_complaint_build_job_id"),
        "device_complaint",
        ["build_job_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_device_complaint_build_job_id"), table_name="device_complaint")
    op.drop_table("device_complaint")
    op.drop_index(op.f("ix_device_outcome_build_job_id"), table_name="device_outcome")
    op.drop_table("device_outcome")
