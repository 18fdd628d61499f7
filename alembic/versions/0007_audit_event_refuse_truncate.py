"""audit_event: refuse TRUNCATE as well as UPDATE and DELETE

The append-only trigger of 0001 fires per row, and TRUNCATE touches no rows: it emptied the
log without a word, and the hash chain of an empty log is trivially intact. A statement-level
BEFORE TRUNCATE trigger with the same function closes that road.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE TRIGGER audit_event_no_truncate
            BEFORE TRUNCATE ON audit_event
            FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
            """
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
