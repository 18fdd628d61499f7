"""campaign_approval: the limits an approval covered (rate, opens budget, failure threshold)

A started campaign that was approved may be made stricter by one person and never looser than
what its approval covered (app.campaigns.service.looser_limits). The binding is a hash, so the
approval keeps the three limits themselves. Approvals given before keep nulls: for them the
campaign's current limits are the bound.

Three nullable columns: a change to the catalog only, no rewrite, on PostgreSQL and SQLite.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 12:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("throttle_per_second", sa.Integer()),
    ("max_opens_per_second", sa.Integer()),
    ("failure_threshold_percent", sa.Numeric(7, 4)),
)


def upgrade() -> None:
    with op.batch_alter_table("campaign_approval") as table:
        for name, kind in _COLUMNS:
            table.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_approval") as table:
        for name, _kind in reversed(_COLUMNS):
            table.drop_column(name)
