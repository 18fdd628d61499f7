"""ledger: the claim reads due rows by index; per-wave summaries of pruned campaigns

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 09:00:00.000000

Table ledger_wave_summary keeps a pruned campaign's per-wave figures (app.delivery.retention).

The claim's index becomes (campaign_id, coalesce(next_attempt_at, '-infinity'), id) over the
claimable rows: a claim and the engine's "anything claimable?" read a range of it, the rows due
by now, instead of walking a local-time backlog that is not due yet in id order.

On PostgreSQL the new index is built and the old one dropped CONCURRENTLY, outside the
migration's transaction: writes to the ledger go on while it builds (a plain CREATE INDEX
would hold them for its duration, about a second per million rows here). Until it is valid
the claim still has the old index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from app.db.types import UTCDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREDICATE = "status IN ('queued', 'retrying')"
DUE = "coalesce(next_attempt_at, '-infinity')"


def upgrade() -> None:
    op.create_table(
        "ledger_wave_summary",
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("wave", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "counts", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("opened", sa.BigInteger(), nullable=False),
        sa.Column("converted", sa.BigInteger(), nullable=False),
        sa.Column("time_to_open_p50", sa.Float(), nullable=True),
        sa.Column("time_to_open_p90", sa.Float(), nullable=True),
        sa.Column("pruned_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_ledger_wave_summary_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "wave", name=op.f("pk_ledger_wave_summary")),
    )
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_delivery_claimable_due")
            op.execute(
                "CREATE INDEX CONCURRENTLY ix_delivery_claimable_due ON delivery "
                f"(campaign_id, {DUE}, id) WHERE {PREDICATE}"
            )
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_delivery_claimable")
    else:
        op.create_index(
            "ix_delivery_claimable_due",
            "delivery",
            ["campaign_id", sa.text(DUE), "id"],
            unique=False,
            sqlite_where=sa.text(PREDICATE),
        )
        op.drop_index("ix_delivery_claimable", table_name="delivery")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_delivery_claimable")
            op.execute(
                "CREATE INDEX CONCURRENTLY ix_delivery_claimable ON delivery "
                f"(campaign_id, id) WHERE {PREDICATE}"
            )
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_delivery_claimable_due")
    else:
        op.create_index(
            "ix_delivery_claimable",
            "delivery",
            ["campaign_id", "id"],
            unique=False,
            sqlite_where=sa.text(PREDICATE),
        )
        op.drop_index("ix_delivery_claimable_due", table_name="delivery")
    op.drop_table("ledger_wave_summary")
