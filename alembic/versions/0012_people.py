"""people and approvals: person, api_key.person_id, the audit log's who, campaign approvals

Every API key now belongs to a person. Keys made before this revision are moved to a person
named after the key (keys sharing a name share the person: a tool's rotated keys are the
same tool). Those people are `service`, not `human`: nothing says a human holds such a key,
and only a human may be the second pair of eyes on a campaign, so an old key cannot approve
anything until an admin has said who holds it (PATCH /v1/people/{id} {"kind": "human"}).

Campaigns remember their creator and last editor as people (neither may approve it); a
campaign stored before this revision gets its creator from the key named in `created_by`
("key:<prefix> (<name>)"), when that key still exists.

The audit log gains who acted (person, key, channel) and `hash_version`. Events already
written keep version 1 (the server default, set without touching a row: the append-only
trigger never fires) and their hashes, which never covered these columns; events written
from now on are version 2 and their hash covers them (app.audit.chain). Downgrading drops
those columns: version 2 events then no longer verify.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 09:00:00.000000
"""

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from alembic import op
from app.db.types import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY_ACTOR = re.compile(r"key:([0-9a-f]{12}) \(")


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("slack_user_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person")),
        sa.UniqueConstraint("name", name=op.f("uq_person_name")),
        sa.UniqueConstraint("slack_user_id", name=op.f("uq_person_slack_user_id")),
    )
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_id", sa.Uuid(), nullable=True))
    _move_keys_to_people()
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.alter_column("person_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.create_index(batch_op.f("ix_api_key_person_id"), ["person_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_key_person_id_person"), "person", ["person_id"], ["id"]
        )

    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_by_person_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("edited_by_person_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_campaign_created_by_person_id_person"),
            "person",
            ["created_by_person_id"],
            ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_campaign_edited_by_person_id_person"),
            "person",
            ["edited_by_person_id"],
            ["id"],
        )
    _campaign_creators()

    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("person_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("key_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("channel", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("hash_version", sa.SmallInteger(), server_default="1", nullable=False)
        )
        batch_op.create_index(batch_op.f("ix_audit_event_person_id"), ["person_id"], unique=False)

    op.create_table(
        "campaign_approval",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("binding", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("person_name", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("override_reason", sa.Text(), nullable=True),
        sa.Column("approved_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("voided_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_campaign_approval_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.id"], name=op.f("fk_campaign_approval_person_id_person")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_approval")),
    )
    with op.batch_alter_table("campaign_approval", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_approval_campaign_at", ["campaign_id", "approved_at"], unique=False
        )


def _move_keys_to_people() -> None:
    """One `service` person per distinct key name, and each key moved to it."""
    bind = op.get_bind()
    keys = bind.execute(sa.text("SELECT id, name FROM api_key ORDER BY created_at")).all()
    person = sa.table(
        "person",
        sa.column("id", sa.Uuid()),
        sa.column("name", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    )
    api_key = sa.table("api_key", sa.column("id", sa.Uuid()), sa.column("person_id", sa.Uuid()))
    now = datetime.now(UTC)
    people: dict[str, uuid.UUID] = {}
    for key_id, name in keys:
        if name not in people:
            people[name] = uuid.uuid4()
            bind.execute(
                person.insert().values(
                    id=people[name], name=name, kind="service", created_at=now, updated_at=now
                )
            )
        bind.execute(
            api_key.update().where(api_key.c.id == _uuid(key_id)).values(person_id=people[name])
        )


def _campaign_creators() -> None:
    bind = op.get_bind()
    owners = {
        prefix: _uuid(person_id)
        for prefix, person_id in bind.execute(sa.text("SELECT prefix, person_id FROM api_key"))
    }
    campaign = sa.table(
        "campaign", sa.column("id", sa.Uuid()), sa.column("created_by_person_id", sa.Uuid())
    )
    for campaign_id, created_by in bind.execute(sa.text("SELECT id, created_by FROM campaign")):
        found = _KEY_ACTOR.match(created_by or "")
        if found is not None and found[1] in owners:
            bind.execute(
                campaign.update()
                .where(campaign.c.id == _uuid(campaign_id))
                .values(created_by_person_id=owners[found[1]])
            )


def _uuid(value: object) -> uuid.UUID:
    # PostgreSQL hands back UUIDs; SQLite the 32-digit hex text sa.Uuid stores.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def downgrade() -> None:
    with op.batch_alter_table("campaign_approval", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_approval_campaign_at")
    op.drop_table("campaign_approval")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_person_id"))
        batch_op.drop_column("hash_version")
        batch_op.drop_column("channel")
        batch_op.drop_column("key_id")
        batch_op.drop_column("person_name")
        batch_op.drop_column("person_id")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_campaign_edited_by_person_id_person"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_campaign_created_by_person_id_person"), type_="foreignkey"
        )
        batch_op.drop_column("edited_by_person_id")
        batch_op.drop_column("created_by_person_id")
    with op.batch_alter_table("api_key", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_key_person_id_person"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_key_person_id"))
        batch_op.drop_column("person_id")
    op.drop_table("person")
