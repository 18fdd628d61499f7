"""TRUNCATE empties a table without touching a row, so the append-only trigger of 0001 (per
row, UPDATE and DELETE) never fired for it; migration 0007 refuses it by statement. The
suite's own reset between tests must still be able to empty the log."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.audit import service as audit
from app.audit.service import verify_chain
from app.auth.principal import SYSTEM
from app.db.session import unit_of_work
from app.runtime import Runtime
from tests.conftest import truncate_all


async def _record(db: Runtime, count: int) -> None:
    async with unit_of_work(db.sessionmaker) as session:
        for i in range(count):
            audit.record(session, SYSTEM, "test.event", subject_type="test", subject_id=i)


async def _count(db: Runtime) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM audit_event"))).scalar_one())


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE audit_event",
        "TRUNCATE audit_event RESTART IDENTITY CASCADE",
        "TRUNCATE api_key, audit_event",
    ],
)
async def test_truncating_the_audit_log_is_refused_on_postgres(
    db: Runtime, is_postgres: bool, statement: str
) -> None:
    if not is_postgres:
        pytest.skip("the append-only triggers are PostgreSQL's; SQLite has no TRUNCATE")
    await _record(db, 3)
    with pytest.raises(DBAPIError, match="append-only"):
        async with db.engine.begin() as conn:
            await conn.execute(text(statement))
    assert await _count(db) == 3
    verdict = await verify_chain(db.sessionmaker)
    assert verdict.broken is None and verdict.checked == 3


async def test_the_suite_still_empties_the_audit_log_between_tests(db: Runtime) -> None:
    await _record(db, 2)
    await truncate_all(db)
    assert await _count(db) == 0
    # The reset lifts the refusal for its own transaction only.
    if db.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.engine.begin() as conn:
                await conn.execute(text("TRUNCATE audit_event"))
