"""issue 5 — clinical gate (orders, appropriateness, sign-offs, account security)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 10:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime

# Cases opened before this revision get the defaults of a plain in-house planning model;
# their review status stays "awaiting_review" so nothing old prints without a review.
CASE_COLUMNS = [
    ("ordering_clinician", S(length=200), False, ""),
    ("ordering_contact", S(length=100), False, ""),
    ("icd10_code", S(length=10), True, None),
    ("intended_use", S(length=32), False, ""),
    ("diagnostic_use", sa.Boolean(), False, sa.false()),
    ("anatomy", sa.JSON(), True, None),
    ("procedure_date", sa.Date(), True, None),
    ("accession_number", S(length=64), True, None),
    ("modality", S(length=8), True, None),
    ("slice_thickness_mm", sa.Float(), True, None),
    ("segmentation_software", S(length=100), False, ""),
    ("segmentation_version", S(length=50), False, ""),
    ("regulatory_route", S(length=32), False, "in_house"),
    ("prescriber_name", S(length=200), False, ""),
    ("prescriber_qualification", S(length=200), False, ""),
    ("design_characteristics", S(length=4000), False, ""),
    ("patient_identifiers", sa.Text(), True, None),
    ("review_status", S(length=20), False, "awaiting_review"),
]


def upgrade() -> None:
    with op.batch_alter_table("user_account") as batch:
        batch.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("locked_until", T(), nullable=True))
        batch.add_column(sa.Column("password_changed_at", T(), nullable=True))

    with op.batch_alter_table("lab_case") as batch:
        for name, type_, nullable, default in CASE_COLUMNS:
            kwargs = {} if default is None else {"server_default": default}
            batch.add_column(sa.Column(name, type_, nullable=nullable, **kwargs))
        batch.create_index("ix_lab_case_review_status", ["review_status"], unique=False)

    with op.batch_alter_table("approval") as batch:
        batch.add_column(sa.Column("signature_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_approval_signature", "signature", ["signature_id"], ["id"])

    op.create_table(
        "appropriateness_scenario",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scenario_id", S(length=80), nullable=False),
        sa.Column("catalog_version", S(length=80), nullable=False),
        sa.Column("specialty", S(length=100), nullable=False),
        sa.Column("condition_group", S(length=200), nullable=False),
        sa.Column("scenario_text", S(length=2000), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("band", S(length=16), nullable=False),
        sa.Column("disagreement", sa.Boolean(), nullable=False),
        sa.Column("rating_driven_by", S(length=16), nullable=True),
        sa.Column("evidence_category", sa.Integer(), nullable=True),
        sa.Column("print_complexity", S(length=16), nullable=True),
        sa.Column("source_doi", S(length=200), nullable=False),
        sa.Column("source_table", S(length=100), nullable=False),
        sa.Column("publication_year", sa.Integer(), nullable=True),
        sa.Column("status", S(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", T(), nullable=False),
        sa.ForeignKeyConstraint(["updated_by"], ["user_account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scenario_id", "catalog_version"),
    )
    op.create_table(
        "appropriateness_review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("decision", S(length=16), nullable=False),
        sa.Column("scenario_id", S(length=80), nullable=True),
        sa.Column("catalog_version", S(length=80), nullable=True),
        sa.Column("scenario_text", S(length=2000), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("band", S(length=16), nullable=True),
        sa.Column("justification", S(length=2000), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("signature_id", sa.Integer(), nullable=True),
        sa.Column("created_at", T(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["lab_case.id"]),
        sa.ForeignKeyConstraint(["reviewer_id"], ["user_account.id"]),
        sa.ForeignKeyConstraint(["signature_id"], ["signature.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_appropriateness_review_case_id", "appropriateness_review", ["case_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_appropriateness_review_case_id", table_name="appropriateness_review")
    op.drop_table("appropriateness_review")
    op.drop_table("appropriateness_scenario")
    with op.batch_alter_table("approval") as batch:
        batch.drop_constraint("fk_approval_signature", type_="foreignkey")
        batch.drop_column("signature_id")
    with op.batch_alter_table("lab_case") as batch:
        batch.drop_index("ix_lab_case_review_status")
        for name, *_ in reversed(CASE_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("user_account") as batch:
        batch.drop_column("password_changed_at")
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")
