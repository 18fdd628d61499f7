"""release planning: where a campaign's send order was last planned to

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 12:31:00.000000

A campaign remembers the furthest device of its send order it has put in the ledger
(campaign.plan_bucket, plan_device_id) and the wave whose release swept up the devices that
joined the audience behind it (plan_swept_wave); ix_device_bucket_id lets a release chunk read
the order on from there as a range of the index, instead of ordering the whole audience.

Campaigns already running keep working: with no position stored, the next chunk reads the
order from its start, skipping what the ledger holds, and stores where it stopped.

On PostgreSQL the index is built CONCURRENTLY, outside the migration's transaction: device
registrations go on while it builds (a plain CREATE INDEX would hold them for its duration).
The columns are nullable without a default, so adding them rewrites nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("plan_bucket", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("plan_device_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("plan_swept_wave", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            # A build interrupted earlier leaves an invalid index of this name behind.
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_device_bucket_id")
            op.execute("CREATE INDEX CONCURRENTLY ix_device_bucket_id ON device (bucket, id)")
    else:
        op.create_index("ix_device_bucket_id", "device", ["bucket", "id"], unique=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_device_bucket_id")
    else:
        op.drop_index("ix_device_bucket_id", table_name="device")
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("plan_swept_wave")
        batch.drop_column("plan_device_id")
        batch.drop_column("plan_bucket")
