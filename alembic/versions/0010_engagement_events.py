"""engagement_event: what became of each push (received, opened, converted)

One row per (delivery, type): the unique constraint makes reports idempotent. Campaign and
wave are copied from the delivery so per-wave figures and the opens series read this table
alone, through one index (campaign, type, occurred_at). A new table: nothing existing is
rewritten or locked beyond the foreign key's brief share lock on `delivery`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db.types import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engagement_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
            name=op.f("fk_engagement_event_delivery_id_delivery"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engagement_event")),
        sa.UniqueConstraint(
            "delivery_id", "type", name=op.f("uq_engagement_event_delivery_id_type")
        ),
    )
    with op.batch_alter_table("engagement_event", schema=None) as batch_op:
        batch_op.create_index(
            "ix_engagement_event_campaign_type_occurred",
            ["campaign_id", "type", "occurred_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("engagement_event", schema=None) as batch_op:
        batch_op.drop_index("ix_engagement_event_campaign_type_occurred")
    op.drop_table("engagement_event")
