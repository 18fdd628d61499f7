"""delivery: partial index for the sender's claim

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREDICATE = "status IN ('queued', 'retrying')"


def upgrade() -> None:
    op.create_index(
        "ix_delivery_claimable",
        "delivery",
        ["campaign_id", "id"],
        unique=False,
        postgresql_where=sa.text(PREDICATE),
        sqlite_where=sa.text(PREDICATE),
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_claimable", table_name="delivery")
