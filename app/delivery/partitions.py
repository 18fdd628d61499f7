"""The ledger's partitions (PostgreSQL): one per month of campaign creation.

`delivery` is partitioned by LIST on `ledger_month`, the month its campaign was created in
(`month_of`: months since 2000, January 2000 = 1). A campaign keeps its month for life, so
all of a campaign's rows live in one partition, and each partition's own `UNIQUE
(campaign_id, device_id)` is the at-most-once guarantee it always was. Month 0 is the ledger
as it was before partitioning (migration 0018 attached the old table as that partition).

A row's id names its month: `id >> MONTH_SHIFT == ledger_month` (a check constraint holds
it, a trigger sets it on insert), except in month 0, which holds the ledger from before
partitioning whatever its ids (after a downgrade and an upgrade again, ids that name later
months). A lookup by row id alone (an engagement event's `wavecast_ref`, a batch's outcomes)
adds `ledger_month IN (0, id >> 40)` (`months_of_refs`) and reads one partition, two while
month 0 is still there.
Ids stay below 2**53: clients that parse a ref as a JavaScript number read it exactly.

Partitions are made ahead: the worker keeps this month's and the next one's (`ensure_ahead`,
at start and every hour), and a release makes its campaign's partition if it is missing
(`ensure`). A partition is made as `CREATE TABLE` then `ATTACH PARTITION`: the attach takes
SHARE UPDATE EXCLUSIVE on the parent, so claims, releases and outcomes of running campaigns go
on (`CREATE TABLE ... PARTITION OF` would take ACCESS EXCLUSIVE).

Retention drops a month's partition whole once every campaign created that month has been
pruned (`app.delivery.retention`): `DETACH PARTITION ... CONCURRENTLY`, then `DROP TABLE`.

SQLite keeps one table; rows carry `ledger_month` all the same, and ids are not encoded.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

# A row id's month is its bits above this one: 2**40 rows per month.
MONTH_SHIFT = 40
LEGACY_MONTH = 0
_EPOCH_YEAR = 2000
_NAME = re.compile(r"^delivery_m(\d+)$")
LEGACY_TABLE = "delivery_legacy"
# Serialises partition creation across processes (pg_advisory_xact_lock key). Dropping does
# not take it (DETACH ... CONCURRENTLY runs outside a transaction): a drop and a creation
# meet on the parent's SHARE UPDATE EXCLUSIVE lock, which both ATTACH and DETACH take, and
# retention only drops months that are over, which nothing creates again.
_LOCK_KEY = 0x57A7_0018


def month_of(at: datetime) -> int:
    """The ledger month of an instant (UTC): January 2000 is 1."""
    at = at.astimezone(UTC) if at.tzinfo else at
    return (at.year - _EPOCH_YEAR) * 12 + at.month


def month_start(month: int) -> datetime:
    """The first instant (UTC) of a ledger month (not of month 0, the legacy ledger)."""
    if month < 1:
        raise ValueError("month 0 is the ledger from before partitioning: it has no start")
    year, index = divmod(month - 1, 12)
    return datetime(_EPOCH_YEAR + year, index + 1, 1, tzinfo=UTC)


def month_of_ref(ref: int) -> int:
    """The ledger month a row id (a `wavecast_ref`) names, on PostgreSQL: its row lives in
    that month's partition or in month 0's."""
    return ref >> MONTH_SHIFT


def months_of_refs(refs: Iterable[int]) -> list[int]:
    """The partitions rows with these ids may live in (PostgreSQL)."""
    return sorted({LEGACY_MONTH} | {ref >> MONTH_SHIFT for ref in refs})


def table_name(month: int) -> str:
    return LEGACY_TABLE if month == LEGACY_MONTH else f"delivery_m{month}"


def is_partition_name(name: str) -> bool:
    """Whether a table is one of the ledger's partitions (not in the models' metadata)."""
    return name == LEGACY_TABLE or _NAME.match(name) is not None


async def existing(conn: AsyncConnection | AsyncSession) -> dict[int, str]:
    """The attached partitions: month -> table."""
    rows = await conn.execute(
        text(
            """
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'delivery'::regclass
            """
        )
    )
    found: dict[int, str] = {}
    for (name,) in rows:
        if name == LEGACY_TABLE:
            found[LEGACY_MONTH] = name
        elif (m := _NAME.match(name)) is not None:
            found[int(m.group(1))] = name
    return found


async def ensure(session: AsyncSession, month: int) -> bool:
    """Make the month's partition if it is missing, in the caller's transaction (PostgreSQL;
    nothing on SQLite). True when it was made now. A look at the catalog (a fraction of a
    millisecond), then the lock only when it is missing."""
    if session.get_bind().dialect.name != "postgresql" or month in await existing(session):
        return False
    return await _ensure(session, month)


async def _ensure(conn: AsyncConnection | AsyncSession, month: int) -> bool:
    if month < 0:
        raise ValueError(f"ledger month {month} has no partition")
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    if month in await existing(conn):
        return False
    name = table_name(month)
    # LIKE copies the columns, their defaults and the check constraints; ATTACH adds the
    # parent's indexes, key and trigger (the table is empty: nothing to scan).
    await conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {name} "
            "(LIKE delivery INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
    )
    # At most once: (campaign, device) is unique in each partition, and a campaign's rows are
    # all in its month's. A partition's own two-column unique index, as the ledger had before
    # partitioning: the release's probe ("is this device in the ledger yet?") matches all of
    # its columns, so the planner takes it even when the statistics still think the campaign
    # has no rows (a unique index on the partition key too would tie with any index on
    # campaign_id, and the planner took the smaller: a walk over the campaign's rows per
    # device).
    await conn.execute(
        text(
            f"ALTER TABLE {name} ADD CONSTRAINT {name}_campaign_device "
            "UNIQUE (campaign_id, device_id)"
        )
    )
    await conn.execute(
        text(f"ALTER TABLE delivery ATTACH PARTITION {name} FOR VALUES IN ({month})")
    )
    await _name_indexes(conn, name)
    return True


def index_name(table: str, parent_index: str) -> str:
    """A partition's copy of one of the ledger's indexes, named as the migration named the
    legacy partition's: ix_delivery_claimable_due -> <table>_claimable_due."""
    if parent_index == "pk_delivery":
        return f"{table}_pkey"
    return f"{table}_{parent_index.removeprefix('ix_delivery_')}"


async def _name_indexes(conn: AsyncConnection | AsyncSession, table: str) -> None:
    """ATTACH names the indexes it builds after their columns; give them the names plans and
    people look for."""
    rows = await conn.execute(
        text(
            """
            SELECT child.relname, parent.relname FROM pg_index x
            JOIN pg_class child ON child.oid = x.indexrelid
            JOIN pg_inherits i ON i.inhrelid = x.indexrelid
            JOIN pg_class parent ON parent.oid = i.inhparent
            WHERE x.indrelid = CAST(:table AS regclass)
            """
        ),
        {"table": table},
    )
    for child, parent in rows.all():
        wanted = index_name(table, parent)
        if child != wanted:
            await conn.execute(text(f'ALTER INDEX "{child}" RENAME TO "{wanted}"'))


# The release takes a partition's statistics again when they do not know the campaign: the
# planner expects fewer than a tenth of the rows it has, and it has at least this many.
KNOWN_ROWS = 1000


async def analyze_if_stale(session: AsyncSession, month: int, campaign_id: uuid.UUID) -> bool:
    """Take the month's partition's statistics again when they predate the campaign's rows
    (PostgreSQL; nothing on SQLite). True when it did.

    A wave's release asks, device by device, whether the ledger already holds it. With
    statistics taken before the campaign had rows, the planner believes it has none and may
    answer each probe through an index on campaign_id alone, walking all of the campaign's
    rows for every device read: seconds per 5,000-device chunk at 100,000 rows (seen at
    1,000,000 devices: a second wave stalled for minutes). A partition holds many campaigns,
    so how much of it changed says nothing of one campaign: the check compares the planner's
    estimate of the campaign's rows with a count of them that stops at KNOWN_ROWS (both a
    fraction of a millisecond). Once the statistics know the campaign they keep knowing it;
    ANALYZE samples at most 30,000 rows, a fraction of a second, and takes no lock a claim or
    an outcome waits for."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    name = table_name(month)
    if month not in await existing(session):
        return False
    planned = await session.execute(
        text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {name} WHERE campaign_id = :campaign"),
        {"campaign": campaign_id},
    )
    expected = float(_plan_rows(planned.scalar_one()))
    if expected >= KNOWN_ROWS:
        return False
    found = await session.execute(
        text(
            f"SELECT count(*) FROM (SELECT 1 FROM {name} WHERE campaign_id = :campaign "
            "LIMIT :known) AS first_rows"
        ),
        {"campaign": campaign_id, "known": KNOWN_ROWS},
    )
    have = int(found.scalar_one())
    if have < KNOWN_ROWS or expected * 10 >= have:
        return False
    await session.execute(text(f"ANALYZE {name}"))
    return True


def _plan_rows(plan: object) -> float:
    """The top node's row estimate from EXPLAIN (FORMAT JSON)."""
    document = json.loads(plan) if isinstance(plan, str) else plan
    rows: float = document[0]["Plan"]["Plan Rows"]  # type: ignore[index]
    return rows


async def ensure_ahead(engine: AsyncEngine, now: datetime) -> list[int]:
    """This month's and next month's partitions (PostgreSQL): the months made now."""
    if engine.dialect.name != "postgresql":
        return []
    this = month_of(now)
    made = []
    for month in (this, this + 1):
        async with engine.begin() as conn:
            if await _ensure(conn, month):
                made.append(month)
    return made


async def drop(engine: AsyncEngine, month: int) -> None:
    """Detach and drop a month's partition. DETACH ... CONCURRENTLY waits for the
    transactions that might still read it and never blocks the other partitions' writers; it
    runs outside a transaction. A detach interrupted earlier is finished first."""
    name = table_name(month)
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        pending = (
            await conn.execute(
                text(
                    """
                    SELECT i.inhdetachpending FROM pg_inherits i
                    JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = 'delivery'::regclass AND c.relname = :name
                    """
                ),
                {"name": name},
            )
        ).first()
        if pending is not None:
            how = "FINALIZE" if pending[0] else "CONCURRENTLY"
            await conn.execute(text(f"ALTER TABLE delivery DETACH PARTITION {name} {how}"))
        await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
