"""campaign: bind a guard override to the content it approved

An operator's override of the content lint was kept on the campaign as a bare reason, so an
edit after the override inherited it: the words that were sent were not the words that were
approved. The override now carries a hash of the content and of the lint's findings on it
(app.guard.override); an override whose hash is not the current content's covers nothing.

Overrides stored before this revision get no hash, on purpose: there is no telling which
content they approved (the campaign may have been edited since), and a hash computed here
would bless whatever the content is now. Such a campaign needs a fresh override to start,
and the worker no longer sends it as overridden.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guard_override_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("guard_override_hash")
