"""issue 16 — scale-out: worker heartbeats and dispatcher lock takeovers

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeat",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("host", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("seen_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("dispatcher", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index(op.f("ix_worker_heartbeat_seen_at"), "worker_heartbeat", ["seen_at"])
    op.create_table(
        "leader_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lock", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("holder", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("previous", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("taken_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_leader_change_taken_at"), "leader_change", ["taken_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_leader_change_taken_at"), table_name="leader_change")
    op.drop_table("leader_change")
    op.drop_index(op.f("ix_worker_heartbeat_seen_at"), table_name="worker_heartbeat")
    op.drop_table("worker_heartbeat")
