"""issue 10 — one enforced lifecycle: leases, back-off, one active job per printer

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime
ACTIVE = "state IN ('dispatching', 'printing', 'interrupted')"


def _leases(batch_op) -> None:
    batch_op.add_column(sa.Column("lease_owner", _str(length=120), nullable=True))
    batch_op.add_column(sa.Column("lease_expires_at", _time(), nullable=True))
    batch_op.add_column(sa.Column("retry_at", _time(), nullable=True))


def upgrade() -> None:
    bind = op.get_bind()
    doubled = bind.execute(
        sa.text(
            f"SELECT printer_id FROM build_job WHERE printer_id IS NOT NULL AND {ACTIVE} "  # noqa: S608
            "GROUP BY printer_id HAVING COUNT(*) > 1"
        )
    ).all()
    if doubled:
        raise RuntimeError(
            "cannot add the one-active-job-per-printer rule: printers "
            + ", ".join(str(row[0]) for row in doubled)
            + " hold more than one dispatching/printing/interrupted job; resolve them first"
        )
    with op.batch_alter_table("part", schema=None) as batch_op:
        _leases(batch_op)
        batch_op.add_column(sa.Column("updated_at", _time(), nullable=True))
    with op.batch_alter_table("build_job", schema=None) as batch_op:
        _leases(batch_op)
        batch_op.add_column(
            sa.Column("dispatch_attempts", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("printer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", _time(), nullable=True))
    op.create_index(
        "uq_build_job_active_per_printer",
        "build_job",
        ["printer_id"],
        unique=True,
        sqlite_where=sa.text(ACTIVE),
        postgresql_where=sa.text(ACTIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_build_job_active_per_printer", table_name="build_job")
    with op.batch_alter_table("printer", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
    with op.batch_alter_table("build_job", schema=None) as batch_op:
        batch_op.drop_column("dispatch_attempts")
        for name in ("retry_at", "lease_expires_at", "lease_owner"):
            batch_op.drop_column(name)
    with op.batch_alter_table("part", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
        for name in ("retry_at", "lease_expires_at", "lease_owner"):
            batch_op.drop_column(name)
