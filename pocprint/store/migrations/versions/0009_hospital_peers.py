"""issue 11 — hospital integration: imaging study on the case, hospital order reference,
notifications and the delivery outbox (e-mail, webhooks, DICOM archive)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_str = sqlmodel.sql.sqltypes.AutoString
_time = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("lab_case", schema=None) as batch_op:
        batch_op.add_column(sa.Column("study_instance_uid", _str(length=64), nullable=True))
        batch_op.add_column(sa.Column("study_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("body_part", _str(length=64), nullable=True))
        batch_op.add_column(sa.Column("imaging_series", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("source_series_uid", _str(length=64), nullable=True))
        batch_op.add_column(sa.Column("imaging_source", _str(length=200), nullable=True))
        batch_op.add_column(sa.Column("order_reference", _str(length=255), nullable=True))
        batch_op.create_unique_constraint("uq_lab_case_order_reference", ["order_reference"])
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event", _str(length=40), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("subject", _str(length=64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("dedupe_key", _str(length=200), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("fanned_out_at", _time(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["lab_case.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    for column in ("event", "case_id", "created_at", "fanned_out_at"):
        op.create_index(f"ix_notification_{column}", "notification", [column])
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", _str(length=16), nullable=False),
        sa.Column("destination", _str(length=255), nullable=False),
        sa.Column("notification_id", sa.Integer(), nullable=True),
        sa.Column("subject", _str(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("state", _str(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _time(), nullable=True),
        sa.Column("last_error", _str(length=2000), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("sent_at", _time(), nullable=True),
        sa.Column("updated_at", _time(), nullable=True),
        sa.Column("lease_owner", _str(length=120), nullable=True),
        sa.Column("lease_expires_at", _time(), nullable=True),
        sa.ForeignKeyConstraint(["notification_id"], ["notification.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("channel", "notification_id", "subject", "state", "next_attempt_at"):
        op.create_index(f"ix_outbox_message_{column}", "outbox_message", [column])


def downgrade() -> None:
    op.drop_table("outbox_message")
    op.drop_table("notification")
    with op.batch_alter_table("lab_case", schema=None) as batch_op:
        batch_op.drop_constraint("uq_lab_case_order_reference", type_="unique")
        for name in (
            "order_reference",
            "imaging_source",
            "source_series_uid",
            "imaging_series",
            "body_part",
            "study_date",
            "study_instance_uid",
        ):
            batch_op.drop_column(name)
