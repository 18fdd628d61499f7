"""device: drop the (status, bucket) index

No query reads it: a wave follows the campaign's rotated order, (bucket + shift) mod the
bucket space, which no index on bucket serves, and status alone selects most of the table.
Every registration and import paid for it (about a fifth of a bulk import's time in
PostgreSQL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 08:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.drop_index("ix_device_status_bucket")


def downgrade() -> None:
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.create_index("ix_device_status_bucket", ["status", "bucket"], unique=False)
