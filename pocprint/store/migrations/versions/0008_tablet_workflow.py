"""issue 13 — tablet workflow: the order names the material

Only combinations in the ordered material are sliced and dispatched. Cases opened before this
revision have no material (NULL) and keep the earlier behaviour (any validated material).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lab_case", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("material", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("lab_case", schema=None) as batch_op:
        batch_op.drop_column("material")
