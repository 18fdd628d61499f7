"""campaign: timing rules (local time, quiet hours, a send-by deadline, priority)

Every column is nullable or has a server default, so the migration is one quick ALTER per
column on PostgreSQL (no table rewrite) and campaigns already running keep their behaviour:
no local time, the deployment's quiet hours, no deadline but their content's time to live,
normal priority.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.types import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("local_time", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("quiet_hours", sa.String(length=11), nullable=True))
        batch_op.add_column(sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("priority", sa.String(length=8), nullable=False, server_default="normal")
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("priority")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("quiet_hours")
        batch_op.drop_column("local_time")
