"""ledger partitions: the delivery ledger partitioned by the month its campaigns were created

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 15:40:00.000000

Campaigns and ledger rows gain `ledger_month` (app.delivery.partitions); existing ones get 0.
On PostgreSQL `delivery` becomes a table partitioned by LIST (ledger_month), and the ledger as
it was becomes its partition for month 0, without copying a row and without stopping the
campaigns that are sending:

1. the columns are added with a constant default (a change to the catalog, no rewrite); the
   partitioned ledger's column has no default: a row inserted from then on names its month;
   each ALTER waits at most 2 s at a time for its lock and tries again, as step 3 does;
2. on the old table, CONCURRENTLY (reads and writes go on): a unique index on (id,
   ledger_month), the partitioned key's, and the checks the partition needs (`ledger_month =
   0`, and a row id names its month) added NOT VALID (a brief lock, waited for as in step 1),
   then validated (SHARE UPDATE EXCLUSIVE: a scan that blocks no writer);
3. one short transaction, which waits at most 2 s at a time for its lock and tries again
   (a long transaction on the ledger never queues every writer behind the migration): the old
   table is renamed `delivery_legacy`, its key moves onto the index of step 2 (it keeps its
   (campaign, device) unique constraint: each partition has its own, see
   app.delivery.partitions), the partitioned `delivery` is created empty, and the old table
   is attached for month 0. The checks prove the partition's bound and the indexes match the
   parent's, so the attach scans nothing and builds nothing. The engagement events lose
   their foreign key to the ledger (a key to a partitioned table must name the partition
   key).

Row ids already handed out stay as they are: they are below 2**40, which names month 0, so
refs already on phones still resolve. Campaigns created before keep month 0 and send on from
the legacy partition; new campaigns get this month's partition, made by the first release
or ahead by the worker.

SQLite keeps one table: the columns, and the events without the key.

Downgrade copies every partition back into one plain table, with the ledger stopped (it
holds an ACCESS EXCLUSIVE lock for the copy).
"""

import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = """
    id bigint NOT NULL DEFAULT nextval('delivery_id_seq'),
    campaign_id uuid NOT NULL,
    device_id uuid NOT NULL,
    wave integer NOT NULL,
    status varchar(16) NOT NULL,
    attempts integer NOT NULL,
    lease_token uuid,
    lease_until timestamptz,
    next_attempt_at timestamptz,
    provider varchar(16),
    provider_message_id varchar(256),
    error_code varchar(64),
    error_detail text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    sent_at timestamptz"""

_FOREIGN_KEYS = """
    CONSTRAINT fk_delivery_campaign_id_campaign FOREIGN KEY (campaign_id)
        REFERENCES campaign (id) ON DELETE CASCADE,
    CONSTRAINT fk_delivery_device_id_device FOREIGN KEY (device_id) REFERENCES device (id)"""

# The ledger's indexes, as the models and earlier migrations define them.
_INDEXES = {
    "ix_delivery_campaign_sent_at": "(campaign_id, sent_at) WHERE sent_at IS NOT NULL",
    "ix_delivery_campaign_status_id": "(campaign_id, status, id)",
    "ix_delivery_campaign_wave_status": "(campaign_id, wave, status)",
    "ix_delivery_claimable_due": (
        "(campaign_id, COALESCE(next_attempt_at, '-infinity'::timestamptz), id) "
        "WHERE status IN ('queued', 'retrying')"
    ),
    "ix_delivery_status_lease_until": "(status, lease_until)",
}

# The id's month bits (app.delivery.partitions.MONTH_SHIFT) and the trigger that sets them:
# a row inserted with the sequence's next value gets its campaign's month in the id's top
# bits. The WHEN clause keeps rows whose id already names their month, and month 0's,
# out of the function.
_ID_MONTH_FUNCTION = """
CREATE OR REPLACE FUNCTION delivery_id_in_month() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.id := (NEW.ledger_month::bigint << 40) + (NEW.id & 1099511627775);
    RETURN NEW;
END
$$
"""
_ID_MONTH_TRIGGER = """
CREATE TRIGGER delivery_id_in_month BEFORE INSERT ON delivery FOR EACH ROW
WHEN (NEW.ledger_month <> 0 AND (NEW.id >> 40) <> NEW.ledger_month)
EXECUTE FUNCTION delivery_id_in_month()
"""

# A row id names its month, except in month 0: the legacy partition holds the ledger from
# before partitioning, and after a downgrade and an upgrade again, rows whose ids name the
# months they were made in.
_ID_NAMES_MONTH = "ledger_month = 0 OR (id >> 40) = ledger_month"

_LOCK_ATTEMPTS = 30


def _has_constraint(name: str) -> bool:
    found = op.get_bind().execute(
        sa.text("SELECT 1 FROM pg_constraint WHERE conname = :name"), {"name": name}
    )
    return found.first() is not None


def _waiting_briefly(statement: str, *, in_transaction: bool) -> None:
    """Run a statement that takes an ACCESS EXCLUSIVE lock, waiting at most 2 s at a time for
    it and trying again (up to _LOCK_ATTEMPTS times, a second apart): a lock request that
    waits queues every later reader and writer of the table behind it, so a long transaction
    on the ledger would stop every sender for as long as it lasts. `in_transaction`: inside
    the migration's transaction (a savepoint per try), else in autocommit."""
    bind = op.get_bind()
    for attempt in range(_LOCK_ATTEMPTS):
        try:
            if in_transaction:
                with bind.begin_nested():
                    op.execute("SET LOCAL lock_timeout = '2s'")
                    op.execute(statement)
                op.execute("SET LOCAL lock_timeout = 0")
            else:
                op.execute("SET lock_timeout = '2s'")
                try:
                    op.execute(statement)
                finally:
                    op.execute("SET lock_timeout = 0")
            return
        except DBAPIError as exc:
            if "lock timeout" not in str(exc) or attempt == _LOCK_ATTEMPTS - 1:
                raise
            time.sleep(1)


def _check(name: str, condition: str) -> None:
    """Add a check without a long lock: NOT VALID (a brief ACCESS EXCLUSIVE lock, waited for
    briefly), then validated by a scan that blocks no writer."""
    if not _has_constraint(name):
        _waiting_briefly(
            f"ALTER TABLE delivery ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID",
            in_transaction=False,
        )
    op.execute(f"ALTER TABLE delivery VALIDATE CONSTRAINT {name}")


def _swap() -> None:
    op.execute(
        "ALTER TABLE engagement_event "
        "DROP CONSTRAINT IF EXISTS fk_engagement_event_delivery_id_delivery"
    )
    op.execute("ALTER TABLE delivery RENAME TO delivery_legacy")
    for old, new in (
        ("fk_delivery_campaign_id_campaign", "fk_delivery_legacy_campaign_id_campaign"),
        ("fk_delivery_device_id_device", "fk_delivery_legacy_device_id_device"),
    ):
        op.execute(f"ALTER TABLE delivery_legacy RENAME CONSTRAINT {old} TO {new}")
    for name in _INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name.replace('ix_delivery', 'delivery_legacy')}")
    # The partition keeps its (campaign, device) unique constraint, under its own name; its
    # key moves onto the index of step 2.
    op.execute(
        "ALTER TABLE delivery_legacy RENAME CONSTRAINT uq_delivery_campaign_id_device_id "
        "TO delivery_legacy_campaign_device"
    )
    op.execute(
        "ALTER TABLE delivery_legacy "
        "DROP CONSTRAINT pk_delivery, "
        "ADD CONSTRAINT delivery_legacy_pkey PRIMARY KEY USING INDEX delivery_legacy_id_month"
    )
    op.execute(
        f"""
        CREATE TABLE delivery ({_COLUMNS},
            ledger_month integer NOT NULL,
            CONSTRAINT pk_delivery PRIMARY KEY (id, ledger_month),
            CONSTRAINT ck_delivery_id_month CHECK ({_ID_NAMES_MONTH}),
            {_FOREIGN_KEYS}
        ) PARTITION BY LIST (ledger_month)
        """
    )
    for name, definition in _INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON delivery {definition}")
    op.execute("ALTER SEQUENCE delivery_id_seq OWNED BY delivery.id")
    op.execute(_ID_MONTH_FUNCTION)
    op.execute(_ID_MONTH_TRIGGER)
    op.execute("ALTER TABLE delivery ATTACH PARTITION delivery_legacy FOR VALUES IN (0)")


def _upgrade_postgresql() -> None:
    # ADD COLUMN takes its table's ACCESS EXCLUSIVE lock even when the column is there.
    for table in ("campaign", "delivery"):
        _waiting_briefly(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS ledger_month integer NOT NULL DEFAULT 0",
            in_transaction=True,
        )
    with op.get_context().autocommit_block():
        # A build interrupted earlier leaves an invalid index of this name behind.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS delivery_legacy_id_month")
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY delivery_legacy_id_month "
            "ON delivery (id, ledger_month)"
        )
        _check("ck_delivery_id_month", _ID_NAMES_MONTH)
        _check("ck_delivery_legacy_month", "ledger_month = 0")
    bind = op.get_bind()
    for attempt in range(_LOCK_ATTEMPTS):
        try:
            with bind.begin_nested():
                op.execute("SET LOCAL lock_timeout = '2s'")
                op.execute("LOCK TABLE delivery, engagement_event IN ACCESS EXCLUSIVE MODE")
                _swap()
            break
        except DBAPIError as exc:
            if "lock timeout" not in str(exc) or attempt == _LOCK_ATTEMPTS - 1:
                raise
            time.sleep(1)
    op.execute("SET LOCAL lock_timeout = 0")


# SQLite's batch mode copies the table, and SQLAlchemy cannot read back an index on an
# expression: made again after each copy of the ledger, as migration 0014 made it.
_SQLITE_CLAIMABLE_DUE = (
    "CREATE INDEX IF NOT EXISTS ix_delivery_claimable_due ON delivery "
    "(campaign_id, coalesce(next_attempt_at, '-infinity'), id) "
    "WHERE status IN ('queued', 'retrying')"
)


def _upgrade_sqlite() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(
            sa.Column("ledger_month", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(
            sa.Column("ledger_month", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("delivery") as batch:
        # Existing rows have their 0; a row inserted from now on must name its month.
        batch.alter_column("ledger_month", server_default=None)
    op.execute(_SQLITE_CLAIMABLE_DUE)
    with op.batch_alter_table("engagement_event") as batch:
        batch.drop_constraint("fk_engagement_event_delivery_id_delivery", type_="foreignkey")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def _downgrade_postgresql() -> None:
    op.execute("LOCK TABLE delivery, engagement_event IN ACCESS EXCLUSIVE MODE")
    op.execute(f"CREATE TABLE delivery_plain ({_COLUMNS})")
    op.execute(
        "INSERT INTO delivery_plain SELECT id, campaign_id, device_id, wave, status, attempts, "
        "lease_token, lease_until, next_attempt_at, provider, provider_message_id, error_code, "
        "error_detail, created_at, updated_at, sent_at FROM delivery"
    )
    op.execute("ALTER SEQUENCE delivery_id_seq OWNED BY delivery_plain.id")
    op.execute("DROP TABLE delivery CASCADE")
    op.execute("DROP FUNCTION IF EXISTS delivery_id_in_month()")
    op.execute("ALTER TABLE delivery_plain RENAME TO delivery")
    op.execute(
        "ALTER TABLE delivery ADD CONSTRAINT pk_delivery PRIMARY KEY (id), "
        "ADD CONSTRAINT uq_delivery_campaign_id_device_id UNIQUE (campaign_id, device_id), "
        + _FOREIGN_KEYS.replace("CONSTRAINT", "ADD CONSTRAINT")
    )
    for name, definition in _INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON delivery {definition}")
    op.execute(
        "ALTER TABLE engagement_event ADD CONSTRAINT fk_engagement_event_delivery_id_delivery "
        "FOREIGN KEY (delivery_id) REFERENCES delivery (id) ON DELETE CASCADE"
    )
    op.execute("ALTER TABLE campaign DROP COLUMN ledger_month")


def _downgrade_sqlite() -> None:
    with op.batch_alter_table("engagement_event") as batch:
        batch.create_foreign_key(
            "fk_engagement_event_delivery_id_delivery",
            "delivery",
            ["delivery_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("ledger_month")
    op.execute(_SQLITE_CLAIMABLE_DUE)
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("ledger_month")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _downgrade_postgresql()
    else:
        _downgrade_sqlite()
