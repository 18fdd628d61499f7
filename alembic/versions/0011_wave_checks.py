"""wave checks: campaign.checks and wave_check_result

`campaign.checks` is nullable: campaigns stored before it have no checks of their own (the
deployment's WAVECAST_DEFAULT_CHECKS still apply to live ones), and adding it is one quick
ALTER on PostgreSQL, no table rewrite. `wave_check_result` is a new table holding each run
of each check per wave, read in order by the engine.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from app.db.types import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "checks",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    op.create_table(
        "wave_check_result",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("check_name", sa.String(length=100), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("observed_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_wave_check_result_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wave_check_result")),
    )
    with op.batch_alter_table("wave_check_result", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wave_check_result_campaign_wave_at",
            ["campaign_id", "wave", "observed_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("wave_check_result", schema=None) as batch_op:
        batch_op.drop_index("ix_wave_check_result_campaign_wave_at")
    op.drop_table("wave_check_result")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("checks")
