"""Pooled connections are pinged before use only after they sat idle
(`app.db.session.PING_AFTER_IDLE_SECONDS`): a connection the server dropped meanwhile (a
restart, an idle timeout) is replaced before a request meets it, and a connection handed back
moments ago is used without the ping's three round trips."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db import session as db_session
from app.runtime import Runtime


async def _pid_then_kill(db: Runtime, engine: object) -> int:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        pid: int = await conn.scalar(text("SELECT pg_backend_pid()"))
    async with db.engine.connect() as other:
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await other.commit()
    return pid


@pytest.mark.parametrize("idle_for_longer", [True, False])
async def test_a_dropped_connection_is_replaced_once_it_has_been_idle(
    db: Runtime, monkeypatch: pytest.MonkeyPatch, idle_for_longer: bool
) -> None:
    if not db.settings.effective_database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: SQLite has no server to drop a connection")
    engine = db_session.create_engine(db.settings.effective_database_url, pool_size=1)
    try:
        dropped = await _pid_then_kill(db, engine)
        # Idle for longer than the interval (0 here), or handed back moments ago (an hour).
        monkeypatch.setattr(db_session, "PING_AFTER_IDLE_SECONDS", 0.0 if idle_for_longer else 3600)
        async with engine.connect() as conn:
            if idle_for_longer:
                pid = await conn.scalar(text("SELECT pg_backend_pid()"))
                assert pid != dropped
            else:
                # Not pinged: the dead connection is what the statement meets.
                with pytest.raises(DBAPIError):
                    await conn.scalar(text("SELECT pg_backend_pid()"))
    finally:
        await engine.dispose()
