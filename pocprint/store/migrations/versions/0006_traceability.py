"""issue 6 — traceability (audit triggers, materials, maintenance, post-processing, QA, release)

The database itself refuses UPDATE and DELETE on the audit trail and on signatures (and
TRUNCATE on PostgreSQL): the application never needs them, and an administrator with a SQL
console has to remove a trigger first, which `pocprint audit verify` then exposes by the
broken hash chain.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 10:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("audit_event", "signature")
_text = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def _refuse_changes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION pocprint_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION pocprint_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION pocprint_append_only()"
            )
        return
    for table in APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {verb} refused'); END"
            )


def _allow_changes() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS pocprint_append_only()")
        return
    for table in APPEND_ONLY:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def upgrade() -> None:
    op.create_table(
        "material_lot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("material", _text(length=64), nullable=False),
        sa.Column("manufacturer", _text(length=100), nullable=False),
        sa.Column("lot_number", _text(length=20), nullable=False),
        sa.Column("expiry", sa.Date(), nullable=False),
        sa.Column("quantity_g", sa.Float(), nullable=False),
        sa.Column("opened_on", sa.Date(), nullable=True),
        sa.Column("received_by", sa.Integer(), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.Column("note", _text(length=1000), nullable=False),
        sa.ForeignKeyConstraint(["received_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_material_lot_material", "material_lot", ["material"])
    op.create_index("ix_material_lot_lot_number", "material_lot", ["lot_number"])

    op.create_table(
        "lot_loading",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("printer_id", sa.Integer(), nullable=False),
        sa.Column("lot_id", sa.Integer(), nullable=True),
        sa.Column("loaded_by", sa.Integer(), nullable=False),
        sa.Column("loaded_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["printer_id"], ["printer.id"]),
        sa.ForeignKeyConstraint(["lot_id"], ["material_lot.id"]),
        sa.ForeignKeyConstraint(["loaded_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_lot_loading_printer_id", "lot_loading", ["printer_id"])
    op.create_index("ix_lot_loading_lot_id", "lot_loading", ["lot_id"])
    op.create_index("ix_lot_loading_loaded_at", "lot_loading", ["loaded_at"])

    op.create_table(
        "maintenance_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("printer_id", sa.Integer(), nullable=False),
        sa.Column("kind", _text(length=20), nullable=False),
        sa.Column("description", _text(length=1000), nullable=False),
        sa.Column("result", _text(length=20), nullable=False),
        sa.Column("performed_at", _time(), nullable=False),
        sa.Column("next_due", sa.Date(), nullable=True),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["printer_id"], ["printer.id"]),
        sa.ForeignKeyConstraint(["recorded_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_maintenance_entry_printer_id", "maintenance_entry", ["printer_id"])

    op.create_table(
        "post_process_step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_job_id", sa.Integer(), nullable=False),
        sa.Column("step", _text(length=40), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=True),
        sa.Column("note", _text(length=1000), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("performed_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["build_job_id"], ["build_job.id"]),
        sa.ForeignKeyConstraint(["operator_id"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_post_process_step_build_job_id", "post_process_step", ["build_job_id"])

    op.create_table(
        "qa_measurement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_job_id", sa.Integer(), nullable=False),
        sa.Column("feature", _text(length=100), nullable=False),
        sa.Column("designed_mm", sa.Float(), nullable=False),
        sa.Column("measured_mm", sa.Float(), nullable=False),
        sa.Column("tolerance_mm", sa.Float(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("photo_sha256", _text(length=64), nullable=True),
        sa.Column("measured_by", sa.Integer(), nullable=False),
        sa.Column("measured_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["build_job_id"], ["build_job.id"]),
        sa.ForeignKeyConstraint(["measured_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_qa_measurement_build_job_id", "qa_measurement", ["build_job_id"])

    op.create_table(
        "qa_disposition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_job_id", sa.Integer(), nullable=False),
        sa.Column("decision", _text(length=20), nullable=False),
        sa.Column("reason", _text(length=2000), nullable=False),
        sa.Column("reprint_job_id", sa.Integer(), nullable=True),
        sa.Column("decided_by", sa.Integer(), nullable=False),
        sa.Column("decided_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(["build_job_id"], ["build_job.id"]),
        sa.ForeignKeyConstraint(["reprint_job_id"], ["build_job.id"]),
        sa.ForeignKeyConstraint(["decided_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_job_id"),
    )

    op.create_table(
        "delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("build_job_id", sa.Integer(), nullable=False),
        sa.Column("delivered_to", _text(length=200), nullable=False),
        sa.Column("location", _text(length=200), nullable=False),
        sa.Column("delivered_at", _time(), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.Column("recorded_at", _time(), nullable=False),
        sa.Column("note", _text(length=1000), nullable=False),
        sa.ForeignKeyConstraint(["build_job_id"], ["build_job.id"]),
        sa.ForeignKeyConstraint(["recorded_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("build_job_id"),
    )
    _refuse_changes()


def downgrade() -> None:
    _allow_changes()
    op.drop_table("delivery")
    op.drop_table("qa_disposition")
    op.drop_index("ix_qa_measurement_build_job_id", table_name="qa_measurement")
    op.drop_table("qa_measurement")
    op.drop_index("ix_post_process_step_build_job_id", table_name="post_process_step")
    op.drop_table("post_process_step")
    op.drop_index("ix_maintenance_entry_printer_id", table_name="maintenance_entry")
    op.drop_table("maintenance_entry")
    op.drop_index("ix_lot_loading_loaded_at", table_name="lot_loading")
    op.drop_index("ix_lot_loading_lot_id", table_name="lot_loading")
    op.drop_index("ix_lot_loading_printer_id", table_name="lot_loading")
    op.drop_table("lot_loading")
    op.drop_index("ix_material_lot_lot_number", table_name="material_lot")
    op.drop_index("ix_material_lot_material", table_name="material_lot")
    op.drop_table("material_lot")
