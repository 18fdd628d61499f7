"""Migration 0018 on PostgreSQL with a long transaction holding a lock it needs: the
migration waits at most its lock_timeout (2 s) at a time and tries again, so other sessions wait
no longer than that behind its ACCESS EXCLUSIVE request; once the long transaction ends the
upgrade completes, the plain ledger is month 0's partition and every row is still there.

Two cases. The long transaction holds `engagement_event`, which the swap locks after
`delivery` and no earlier step touches: while the swap waits for it, it holds `delivery`, as
it would if the holder were on the ledger itself. Or it holds `delivery`, open when the
upgrade starts: the steps before the swap (the new column, the checks added NOT VALID) take
the ledger's ACCESS EXCLUSIVE lock too, and wait for it the same way.

PostgreSQL only: SQLite keeps one table (the round trip is in tests/db/test_migrations.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from itertools import pairwise

import httpx
import pytest
from sqlalchemy import Row, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from alembic import command
from app.db import migrate
from app.runtime import Runtime
from tests.conftest import KeyMaker
from tests.delivery import sending_through_migrations as old_sender

DEVICES = 80
# The swap's lock_timeout (alembic/versions/0018_ledger_partitions.py).
LOCK_TIMEOUT = 2.0
# Longer than two of the swap's waits: it has to try at least twice more.
HOLD = 5.0
# How long a session may wait behind the migration's lock request.
PATIENCE = 3.0
# Every wait on the migration is bounded by this.
BOUND = 30.0

_WAITING = text(
    """
    SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
    WHERE l.locktype = 'relation' AND NOT l.granted AND c.relname = :table
        AND c.relnamespace = 'public'::regnamespace
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.pid <> ALL(:ours)
    """
)


async def _pid(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _ledger(conn: AsyncConnection, campaign_id: uuid.UUID) -> Sequence[Row[tuple[object]]]:
    rows = await conn.execute(
        text(
            "SELECT id, device_id, wave, status, attempts, sent_at FROM delivery "
            "WHERE campaign_id = :c ORDER BY id"
        ),
        {"c": campaign_id},
    )
    return rows.all()


async def _watch(
    conn: AsyncConnection, table: str, ours: list[int], seen: list[tuple[float, bool]]
) -> None:
    """Whether the migration is waiting for a lock on `table`, every 50 ms."""
    while True:
        waiting = (await conn.execute(_WAITING, {"table": table, "ours": ours})).first()
        seen.append((time.monotonic(), waiting is not None))
        await conn.commit()
        await asyncio.sleep(0.05)


def _attempts(seen: list[tuple[float, bool]]) -> int:
    """Separate waits for the lock: the migration gave up and asked again in between."""
    return sum(1 for (_, before), (_, now) in pairwise([(0.0, False), *seen]) if now and not before)


@pytest.mark.parametrize(
    "held",
    [
        "engagement_event",
        "delivery",
    ],
)
async def test_0018_waits_for_a_long_transaction_without_blocking_the_ledger(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool, held: str
) -> None:
    if not is_postgres:
        pytest.skip("PostgreSQL only: the swap's lock_timeout and its retries")
    campaign = await old_sender.half_sent(client, make_key, db, DEVICES)
    url = db.settings.effective_database_url
    engine: AsyncEngine = create_async_engine(url, poolclass=NullPool)
    holder = probe = watcher = None
    upgrading: asyncio.Task[None] | None = None
    watching: asyncio.Task[None] | None = None
    seen: list[tuple[float, bool]] = []
    try:
        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), "0017")
        await db.engine.dispose()
        probe = await engine.connect()
        kind = "SELECT relkind::text FROM pg_class WHERE relname = 'delivery'"
        assert (await probe.execute(text(kind))).scalar_one() == "r"
        before = await _ledger(probe, campaign.campaign_id)
        assert len(before) == DEVICES // 2
        await probe.commit()
        await probe.execute(text(f"SET statement_timeout = '{PATIENCE}s'"))
        await probe.commit()

        holder = await engine.connect()
        watcher = await engine.connect()
        ours = [await _pid(c) for c in (holder, probe, watcher)]
        for opened in (holder, probe, watcher):
            await opened.commit()
        # Nothing else in the holder's transaction: a query's portal stays open until the
        # next, and its snapshot would hold up the concurrent index build of step 2 instead.
        await holder.execute(text(f"LOCK TABLE {held} IN ACCESS SHARE MODE"))

        started = time.monotonic()
        upgrading = asyncio.create_task(asyncio.to_thread(migrate.upgrade, url))
        watching = asyncio.create_task(_watch(watcher, held, ours, seen))
        deadline = started + BOUND
        while not any(w for _, w in seen):
            assert not upgrading.done(), "the upgrade ended without waiting for the holder"
            assert time.monotonic() < deadline, "the upgrade never waited for the holder"
            await asyncio.sleep(0.05)
        first_wait = next(t for t, w in seen if w)

        # Issued while the migration waits for its lock: it waits at most what is left of
        # the lock_timeout, not until the holder ends.
        asked = time.monotonic()
        try:
            count = (await probe.execute(text("SELECT count(*) FROM delivery"))).scalar_one()
        except DBAPIError as exc:
            pytest.fail(
                f"a reader of the ledger waited over {PATIENCE} s behind the migration: {exc}"
            )
        waited = time.monotonic() - asked
        await probe.commit()
        assert count == len(before)
        assert waited < PATIENCE

        await asyncio.sleep(max(0.0, first_wait + HOLD - time.monotonic()))
        assert not upgrading.done(), "the upgrade ended while the holder was open"
        await holder.commit()
        released = time.monotonic()
        await asyncio.wait_for(asyncio.shield(upgrading), BOUND)
        finished = time.monotonic()
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.wait([watching], timeout=BOUND)
        for conn in (holder, probe, watcher):
            if conn is not None:
                await conn.close()
        if upgrading is not None:
            # Ended by the holder's end whatever happened; its error, if any, is raised above.
            await asyncio.wait([upgrading], timeout=BOUND)
        # Back at the head for the tests that follow, however far the upgrade got.
        await asyncio.to_thread(migrate.upgrade, url)
        await db.engine.dispose()
        await engine.dispose()

    # It waited for the holder, asked again more than once, and went through once it ended.
    assert finished > released
    assert finished - started > HOLD - LOCK_TIMEOUT
    assert _attempts(seen) >= 2, "the migration never gave up its wait and asked again"

    async with db.engine.connect() as conn:
        partitioned = await conn.execute(
            text("SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'delivery'::regclass")
        )
        assert partitioned.scalar_one() == 1
        legacy = await conn.execute(
            text(
                "SELECT i.inhparent::regclass::text, pg_get_expr(c.relpartbound, c.oid) "
                "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhrelid = 'delivery_legacy'::regclass"
            )
        )
        assert legacy.one() == ("delivery", "FOR VALUES IN (0)")
        assert await _ledger(conn, campaign.campaign_id) == before
        where = await conn.execute(
            text("SELECT DISTINCT tableoid::regclass::text FROM delivery WHERE campaign_id = :c"),
            {"c": campaign.campaign_id},
        )
        assert where.scalars().all() == ["delivery_legacy"]
