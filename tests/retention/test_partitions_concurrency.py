"""The ledger's partitions under concurrency (app.delivery.partitions, PostgreSQL): sessions
that make the same month's partition at once make it once, named as one made alone; a detach
interrupted in its second phase (the partition left "detach pending") is finished by `drop`.
SQLite keeps one table: nothing to test there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from app.db.session import unit_of_work
from app.delivery import partitions
from app.runtime import Runtime

# Every wait in these tests ends within this many seconds.
BOUND = 10
SESSIONS = 4


@asynccontextmanager
async def _side_engine(db: Runtime) -> AsyncIterator[AsyncEngine]:
    """Connections of their own, never handed back to the runtime's pool: a session setting or
    an open transaction on them cannot leak into another test."""
    engine = create_async_engine(db.settings.effective_database_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _attached(conn: AsyncConnection, name: str) -> list[bool]:
    """inhdetachpending of each of the ledger's partitions named `name`."""
    rows = await conn.execute(
        text(
            """
            SELECT i.inhdetachpending FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'delivery'::regclass AND c.relname = :name
            """
        ),
        {"name": name},
    )
    return [bool(r[0]) for r in rows]


async def _indexes(conn: AsyncConnection, table: str) -> tuple[set[str], dict[str, str]]:
    """A table's index names, and for those that belong to one of the ledger's indexes, the
    ledger's index each belongs to."""
    names = await conn.execute(
        text("SELECT indexname FROM pg_indexes WHERE tablename = :t"), {"t": table}
    )
    linked = await conn.execute(
        text(
            """
            SELECT child.relname, parent.relname FROM pg_index x
            JOIN pg_class child ON child.oid = x.indexrelid
            JOIN pg_inherits i ON i.inhrelid = x.indexrelid
            JOIN pg_class parent ON parent.oid = i.inhparent
            WHERE x.indrelid = CAST(:t AS regclass)
            """
        ),
        {"t": table},
    )
    return {r[0] for r in names}, {r[0]: r[1] for r in linked}


async def _gone(engine: AsyncEngine, month: int) -> None:
    async with asyncio.timeout(BOUND):
        await partitions.drop(engine, month)


async def test_sessions_making_one_month_at_once_make_it_once(
    db: Runtime, is_postgres: bool
) -> None:
    """Four units of work ensure the same missing month together. The advisory lock is held
    first by another connection until all four wait on it, so each has already looked at the
    catalog and found the month missing: the look again under the lock is what keeps the
    three others from making it a second time."""
    if not is_postgres:
        return
    month = partitions.month_of(datetime(2036, 3, 9, tzinfo=UTC))
    alone = month + 1
    name, alone_name = partitions.table_name(month), partitions.table_name(alone)

    async def ensure_in_own_transaction() -> bool:
        async with unit_of_work(db.sessionmaker) as session:
            return await partitions.ensure(session, month)

    tasks: list[asyncio.Task[bool]] = []
    try:
        async with unit_of_work(db.sessionmaker) as session:
            assert await partitions.ensure(session, alone) is True
        async with _side_engine(db) as side, side.connect() as holder:
            await holder.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": partitions._LOCK_KEY}
            )
            tasks = [asyncio.create_task(ensure_in_own_transaction()) for _ in range(SESSIONS)]
            async with asyncio.timeout(BOUND), db.engine.connect() as watcher:
                while True:
                    waiting = await watcher.execute(
                        text(
                            """
                            SELECT count(*) FROM pg_locks l
                            JOIN pg_database d ON d.oid = l.database
                            WHERE l.locktype = 'advisory' AND NOT l.granted
                              AND d.datname = current_database()
                              AND l.classid = 0 AND l.objid = :key
                            """
                        ),
                        {"key": partitions._LOCK_KEY},
                    )
                    if waiting.scalar_one() == SESSIONS:
                        break
                    assert not any(t.done() for t in tasks), [t.result() for t in tasks]
                    await asyncio.sleep(0.02)
            await holder.commit()
        async with asyncio.timeout(BOUND):
            made = await asyncio.gather(*tasks)

        assert sorted(made) == [False] * (SESSIONS - 1) + [True]
        async with db.engine.connect() as conn:
            assert await _attached(conn, name) == [False]
            assert (await partitions.existing(conn))[month] == name
            tables = await conn.execute(
                text("SELECT relname FROM pg_class WHERE relname LIKE :p AND relkind = 'r'"),
                {"p": f"{name}%"},
            )
            assert [r[0] for r in tables] == [name]
            names, linked = await _indexes(conn, name)
            alone_names, _ = await _indexes(conn, alone_name)
            parents = await conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = 'delivery'")
            )
            parent_names = {r[0] for r in parents}
        assert names == {n.replace(alone_name, name, 1) for n in alone_names}
        assert set(linked.values()) == parent_names
        assert all(child == partitions.index_name(name, p) for child, p in linked.items())
        assert f"{name}_pkey" in names and f"{name}_campaign_device" in names
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await _gone(db.engine, month)
        await _gone(db.engine, alone)


async def test_drop_finishes_a_detach_interrupted_in_its_second_phase(
    db: Runtime, is_postgres: bool
) -> None:
    """A real interrupted detach: a REPEATABLE READ transaction reads the ledger (it holds
    ACCESS SHARE on `delivery` until it ends); `DETACH PARTITION ... CONCURRENTLY` commits its
    first phase (the partition marked detach pending), then waits for that transaction, and a
    one-second statement_timeout cancels the wait, which leaves the mark. `DETACH ...
    CONCURRENTLY` on a pending partition is refused by PostgreSQL ("already pending detach"):
    `drop` must FINALIZE it, then drop the table. `drop` itself checks nothing about the
    month's campaigns (retention does that), so an empty partition of a far month serves."""
    if not is_postgres:
        return
    month = partitions.month_of(datetime(2037, 8, 2, tzinfo=UTC))
    name = partitions.table_name(month)
    try:
        async with unit_of_work(db.sessionmaker) as session:
            assert await partitions.ensure(session, month) is True
        async with _side_engine(db) as side, side.connect() as holder:
            holder = await holder.execution_options(isolation_level="REPEATABLE READ")
            await holder.execute(text("SELECT count(*) FROM delivery"))
            async with side.connect() as detacher:
                detacher = await detacher.execution_options(isolation_level="AUTOCOMMIT")
                await detacher.execute(text("SET statement_timeout = '1s'"))
                with pytest.raises(DBAPIError, match="statement timeout"):
                    async with asyncio.timeout(BOUND):
                        await detacher.execute(
                            text(f"ALTER TABLE delivery DETACH PARTITION {name} CONCURRENTLY")
                        )
            async with db.engine.connect() as conn:
                assert await _attached(conn, name) == [True]
            await holder.rollback()

        await _gone(db.engine, month)

        async with db.engine.connect() as conn:
            assert await _attached(conn, name) == []
            assert month not in await partitions.existing(conn)
            gone = await conn.execute(text("SELECT to_regclass(:t)"), {"t": name})
            assert gone.scalar_one() is None
    finally:
        async with db.engine.connect() as conn:
            left = await _attached(conn, name)
        if left:
            await _gone(db.engine, month)
