"""opens budget: campaign.max_opens_per_second, effective_per_second, effective_reason

Three nullable columns: campaigns stored before them have no budget (their rate is
throttle_per_second alone), and each is one quick ALTER on PostgreSQL, no table rewrite.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_opens_per_second", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("effective_per_second", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("effective_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("effective_reason")
        batch_op.drop_column("effective_per_second")
        batch_op.drop_column("max_opens_per_second")
