"""electronic signatures

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("signer_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("meaning", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("entity", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("entity_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("content_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("content", sa.JSON(), nullable=True),
        sa.Column("comment", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("signed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("withdraws_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"]),
        sa.ForeignKeyConstraint(["withdraws_id"], ["signature.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_signature_user_id", "signature", ["user_id"])
    op.create_index("ix_signature_meaning", "signature", ["meaning"])
    op.create_index("ix_signature_entity_id", "signature", ["entity_id"])


def downgrade() -> None:
    op.drop_index("ix_signature_entity_id", table_name="signature")
    op.drop_index("ix_signature_meaning", table_name="signature")
    op.drop_index("ix_signature_user_id", table_name="signature")
    op.drop_table("signature")
