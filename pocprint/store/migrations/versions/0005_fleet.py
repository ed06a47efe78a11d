"""issue 4 — printer fleet, validated combinations, dispatch controls

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("printer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("min_feature_mm", sa.Float(), nullable=True))

    with op.batch_alter_table("build_job", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("orientation", _str(length=20), nullable=False, server_default="stable")
        )
        batch_op.add_column(sa.Column("orientation_reason", _str(length=1000), nullable=True))
        batch_op.add_column(sa.Column("orientation_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("placement", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("material", _str(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("urgent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("urgent_reason", _str(length=1000), nullable=True))
        batch_op.add_column(sa.Column("urgent_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("urgent_at", _time(), nullable=True))
        batch_op.add_column(sa.Column("controls", sa.JSON(), nullable=True))
        batch_op.create_foreign_key(
            "fk_build_job_orientation_by", "user_account", ["orientation_by"], ["id"]
        )
        batch_op.create_foreign_key("fk_build_job_urgent_by", "user_account", ["urgent_by"], ["id"])

    op.create_table(
        "job_slice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("profile_id", _str(length=100), nullable=False),
        sa.Column("profile_sha256", _str(length=64), nullable=False),
        sa.Column("material", _str(length=64), nullable=False),
        sa.Column("gcode_sha256", _str(length=64), nullable=False),
        sa.Column("gcode_sha1", _str(length=40), nullable=False),
        sa.Column("gcode_bytes", sa.Integer(), nullable=False),
        sa.Column("slicer_name", _str(length=50), nullable=False),
        sa.Column("slicer_version", _str(length=50), nullable=False),
        sa.Column("slicer_config", sa.JSON(), nullable=True),
        sa.Column("estimated_time_s", sa.Integer(), nullable=True),
        sa.Column("filament_mm", sa.Float(), nullable=True),
        sa.Column("filament_cm3", sa.Float(), nullable=True),
        sa.Column("filament_g", sa.Float(), nullable=True),
        sa.Column("placement", sa.JSON(), nullable=True),
        sa.Column("slicer_seconds", sa.Float(), nullable=True),
        sa.Column("sliced_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["build_job.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_job_slice_job_id"), "job_slice", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_job_slice_job_id"), table_name="job_slice")
    op.drop_table("job_slice")
    with op.batch_alter_table("build_job", schema=None) as batch_op:
        batch_op.drop_constraint("fk_build_job_urgent_by", type_="foreignkey")
        batch_op.drop_constraint("fk_build_job_orientation_by", type_="foreignkey")
        for column in (
            "controls",
            "urgent_at",
            "urgent_by",
            "urgent_reason",
            "urgent",
            "material",
            "placement",
            "orientation_by",
            "orientation_reason",
            "orientation",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("printer", schema=None) as batch_op:
        batch_op.drop_column("min_feature_mm")
