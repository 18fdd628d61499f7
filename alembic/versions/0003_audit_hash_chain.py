"""audit log hash chain: sequence, prev_hash, hash; existing events chained in id order

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types
from app.audit import chain

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_events = sa.table(
    "audit_event",
    sa.column("id", sa.BigInteger()),
    sa.column("occurred_at", app.db.types.UTCDateTime()),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("subject_type", sa.String()),
    sa.column("subject_id", sa.String()),
    sa.column("reason", sa.Text()),
    sa.column("before", app.db.types.JSONType),
    sa.column("after", app.db.types.JSONType),
    sa.column("sequence", sa.BigInteger()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sequence', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))

    # Chain what is already there, in the order it was written. The append-only trigger
    # (0001) is lifted for this one rewrite, inside the migration's transaction.
    if postgres:
        op.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
    prev_hash = chain.GENESIS
    rows = bind.execute(sa.select(_events).order_by(_events.c.id)).mappings().all()
    for sequence, row in enumerate(rows, start=1):
        fields = chain.ChainFields(
            sequence=sequence,
            occurred_at=row["occurred_at"],
            actor=row["actor"],
            action=row["action"],
            subject_type=row["subject_type"],
            subject_id=row["subject_id"],
            reason=row["reason"],
            before=row["before"],
            after=row["after"],
        )
        digest = chain.digest(fields, prev_hash)
        bind.execute(
            _events.update()
            .where(_events.c.id == row["id"])
            .values(sequence=sequence, prev_hash=prev_hash, hash=digest)
        )
        prev_hash = digest
    if postgres:
        op.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")

    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.alter_column('sequence', existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_audit_event_sequence'), ['sequence'])


def downgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_event_sequence'), type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('sequence')
