"""units and repair acceptance

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 07:34:27.588475
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("part", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("units", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True)
        )
        batch_op.add_column(sa.Column("scale_to_mm", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("units_guess", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("units_decided_by", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("accepted_by", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "accepted_reason", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("accepted_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True)
        )
        batch_op.create_foreign_key(
            "fk_part_units_decided_by", "user_account", ["units_decided_by"], ["id"]
        )
        batch_op.create_foreign_key("fk_part_accepted_by", "user_account", ["accepted_by"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("part", schema=None) as batch_op:
        batch_op.drop_constraint("fk_part_accepted_by", type_="foreignkey")
        batch_op.drop_constraint("fk_part_units_decided_by", type_="foreignkey")
        batch_op.drop_column("accepted_at")
        batch_op.drop_column("accepted_reason")
        batch_op.drop_column("accepted_by")
        batch_op.drop_column("units_decided_by")
        batch_op.drop_column("units_guess")
        batch_op.drop_column("scale_to_mm")
        batch_op.drop_column("units")
