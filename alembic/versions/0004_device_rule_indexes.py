"""device indexes for audience rules on tags and app versions; claims in id order

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 10:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("device", schema=None) as batch_op:
        # GIN on PostgreSQL (jsonb_ops: serves ?| and ?&); a plain index elsewhere.
        batch_op.create_index("ix_device_tags", ["tags"], unique=False, postgresql_using="gin")
        batch_op.create_index("ix_device_app_version_key", ["app_version_key"], unique=False)
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        # A claim reads one status of a campaign in id order and stops after its batch.
        batch_op.create_index(
            "ix_delivery_campaign_status_id", ["campaign_id", "status", "id"], unique=False
        )
        batch_op.drop_index("ix_delivery_campaign_status")


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.create_index(
            "ix_delivery_campaign_status", ["campaign_id", "status"], unique=False
        )
        batch_op.drop_index("ix_delivery_campaign_status_id")
    with op.batch_alter_table("device", schema=None) as batch_op:
        batch_op.drop_index("ix_device_app_version_key")
        batch_op.drop_index("ix_device_tags", postgresql_using="gin")
