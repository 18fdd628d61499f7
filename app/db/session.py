"""Engines and sessions.

A request or a job commits exactly once: the unit of work below commits or rolls back, and
services only flush. Nothing is handed to a worker through the session: a worker finds its
work in the database (the tick reads it), so it never acts on a row that does not exist.

A unit of work decides (a campaign's transition reads its status, then writes the next one),
so its reads and writes must be one atomic step across processes. PostgreSQL gets that from
`SELECT ... FOR UPDATE`. SQLite ignores FOR UPDATE, and its Python drivers begin a
transaction only at the first write, leaving the reads outside it: two processes could both
read `draft` and both act on it. So on SQLite transactions are begun here, not by the driver,
and a unit of work begins with `BEGIN IMMEDIATE`: it takes the database's one write lock
before its first read, and a second decider waits for the first to commit, then reads its
result. Sessions and connections opened outside a unit of work (the readiness probe, the
audit walk) only read, and begin a plain deferred `BEGIN`, so under WAL they still read
beside a writer instead of queueing for its lock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

AfterRollback = Callable[[], Awaitable[Any]]

# Connection.info key: the BEGIN still to be sent before the transaction's first statement.
_SQLITE_BEGIN = "sqlite_begin"
# Session.info key: this session decides (a unit of work), so SQLite begins it IMMEDIATE.
_DECIDES = "decides"


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _tune_sqlite(engine)
        return engine
    engine = create_async_engine(
        url,
        # At most 20 connections, kept once opened. (It was 10 kept and 10 more on demand,
        # but a connection beyond the kept ones is closed as soon as it is handed back while
        # the pool is full: under a steady load just above 10 sessions at once, the API at 32
        # connections, that opened and closed a connection, TLS included, every few requests.)
        pool_size=pool_size,
        max_overflow=0,
        # Plain SQL strings (rule compilation, ledger claims) are cached per connection.
        connect_args={"statement_cache_size": 256, "server_settings": {"jit": "off"}},
    )
    _ping_idle_connections(engine)
    return engine


# A connection handed back to the pool less than this long ago is not pinged before its next
# use: it answered moments ago, and the ping (BEGIN, a query, ROLLBACK: three round trips) cost
# an API request as much as its own statement. One idle for longer is pinged first, as
# `pool_pre_ping` would, so a database restart still costs no request its connection.
PING_AFTER_IDLE_SECONDS = 2.0
_RETURNED_AT = "returned_at"


def _ping_idle_connections(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return  # new, or back moments ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool replaces the connection and tries again.
            raise DisconnectionError("the pooled connection did not answer a ping") from exc


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction control (BEGIN before the first write only) is off:
        # `_on_begin` below begins every transaction itself (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the API read while a worker writes; busy_timeout turns lock contention
        # between processes into waiting instead of "database is locked" errors.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Sent with the first statement, not now: a unit of work that never touches the
        # database takes no lock, and the session's after_begin may still ask for IMMEDIATE.
        conn.info[_SQLITE_BEGIN] = "BEGIN"

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _send_begin(
        conn: Connection, cursor: Any, _statement: str, _params: Any, _context: Any, _many: bool
    ) -> None:
        # before_cursor_execute, not before_execute: a connection's autobegin (and so
        # `_on_begin`) happens between the two.
        begin = conn.info.pop(_SQLITE_BEGIN, None)
        if begin is not None:
            cursor.execute(begin)

    @event.listens_for(engine.sync_engine, "commit")
    @event.listens_for(engine.sync_engine, "rollback")
    def _forget_begin(conn: Connection) -> None:
        conn.info.pop(_SQLITE_BEGIN, None)  # a transaction that ran no statement


@event.listens_for(Session, "after_begin")
def _decide_immediately(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    if session.info.get(_DECIDES) and _SQLITE_BEGIN in connection.info:
        connection.info[_SQLITE_BEGIN] = "BEGIN IMMEDIATE"


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def after_rollback(session: AsyncSession, callback: AfterRollback) -> None:
    """Run `callback` if the session's transaction is rolled back: for records that must
    outlive a refusal (the refusal itself is audited even though nothing else is kept)."""
    session.info.setdefault("after_rollback", []).append(callback)


async def commit_now(session: AsyncSession) -> None:
    """Commit before the request ends, for answers that must follow a durable change and
    then act on it (a stop waits for the gate only after the stop is committed). The unit
    of work's own commit at the end then has nothing left to do."""
    await session.commit()


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction that commits or rolls back as a whole; on SQLite it holds the write
    lock from its first statement (see the module's docstring), so keep it short and never
    open another unit of work inside one that has already touched the database."""
    async with sessionmaker() as session:
        session.info[_DECIDES] = True
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            for callback in session.info.pop("after_rollback", []):
                await callback()
            raise
