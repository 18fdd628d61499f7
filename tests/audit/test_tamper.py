"""The stored chain: appends link up (also concurrently), migrations chain old rows, and
`wavecast audit verify` names the first broken event after an edit, a deletion or a
reordering of stored rows.

On PostgreSQL the table refuses UPDATE and DELETE (trigger from migration 0001), so the
tampering below runs as the superuser with `SET LOCAL session_replication_role = replica`,
which skips ordinary triggers for that transaction: exactly what an attacker with database
superuser rights could do, and what the chain exists to expose.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit import service as audit
from app.audit.service import verify_chain
from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.db import migrate
from app.db.session import create_sessionmaker, unit_of_work
from app.runtime import Runtime

TRICKY_VALUES: list[object] = [
    {"big": 1e20, "two": 2.0, "tiny": 1.5e-300, "huge": 1.2345678901234567e300},
    {"neg_zero": -0.0, "tenth": 0.1, "int": 2**62, "nested": [[1.0, {"a": None}], True]},
    {"ąęśćż": "zażółć gęślą jaźń", "emoji": "🚀", "quote": '"\\'},
    {},
]


async def record_events(db: Runtime, count: int) -> None:
    for i in range(count):
        async with unit_of_work(db.sessionmaker) as session:
            audit.record(
                session,
                SYSTEM,
                "test.event",
                subject_type="test",
                subject_id=i,
                reason=f"event {i}",
                after=TRICKY_VALUES[i % len(TRICKY_VALUES)],  # type: ignore[arg-type]
            )


async def ids_by_sequence(db: Runtime) -> dict[int, int]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sequence, id FROM audit_event"))
        return {int(s): int(i) for s, i in rows}


async def tamper(db: Runtime, *statements: str) -> None:
    async with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
        for statement in statements:
            await conn.execute(text(statement))


def wavecast_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WAVECAST_DATABASE_URL": database_url, "WAVECAST_JSON_LOGS": "false"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_events_link_up_across_transactions_and_within_one(db: Runtime) -> None:
    await record_events(db, 3)
    async with unit_of_work(db.sessionmaker) as session:
        for i in range(3):
            audit.record(session, SYSTEM, "test.batch", subject_type="test", subject_id=i)
    verdict = await verify_chain(db.sessionmaker)
    assert verdict.broken is None
    assert verdict.checked == 6
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT sequence, prev_hash, hash, action, subject_id FROM audit_event "
                    "ORDER BY id"
                )
            )
        ).all()
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0][1] == "0" * 64
    assert all(rows[k][1] == rows[k - 1][2] for k in range(1, 6))
    # Within one transaction, the order they were recorded in.
    assert [r[4] for r in rows[3:]] == ["0", "1", "2"]


async def test_a_rolled_back_event_leaves_no_gap(db: Runtime) -> None:
    await record_events(db, 2)

    async def doomed() -> None:
        async with unit_of_work(db.sessionmaker) as session:
            audit.record(session, SYSTEM, "test.doomed", subject_type="test")
            await session.flush()
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        await doomed()
    await record_events(db, 1)
    verdict = await verify_chain(db.sessionmaker)
    assert verdict.broken is None
    assert verdict.checked == 3


async def test_concurrent_appends_never_fork_the_chain(db: Runtime) -> None:
    async def one(i: int) -> None:
        async with unit_of_work(db.sessionmaker) as session:
            audit.record(session, SYSTEM, "test.race", subject_type="test", subject_id=i)
            await session.flush()
            await asyncio.sleep(0.01)  # hold the transaction open while others try to append
            audit.record(session, SYSTEM, "test.race2", subject_type="test", subject_id=i)

    await asyncio.gather(*(one(i) for i in range(12)))
    verdict = await verify_chain(db.sessionmaker)
    assert verdict.broken is None
    assert verdict.checked == 24
    assert sorted(await ids_by_sequence(db)) == list(range(1, 25))


async def test_verify_pages_through_a_long_log(db: Runtime) -> None:
    await record_events(db, 7)
    verdict = await verify_chain(db.sessionmaker, page_size=3)
    assert verdict.broken is None
    assert verdict.checked == 7


async def test_wavecast_audit_verify_passes_an_intact_log(db: Runtime) -> None:
    await record_events(db, 4)
    result = await asyncio.to_thread(wavecast_verify, db.settings.database_url)
    assert result.returncode == 0, result.stderr
    assert "audit log intact: 4 events" in result.stdout


@pytest.mark.parametrize(
    ("tampering", "broken_sequence", "says"),
    [
        (["UPDATE audit_event SET reason = 'nothing to see' WHERE sequence = 3"], 3, "edited"),
        (["UPDATE audit_event SET after = NULL WHERE sequence = 4"], 4, "edited"),
        (["DELETE FROM audit_event WHERE sequence = 3"], 4, "sequence 3 missing"),
        (
            [
                "UPDATE audit_event SET sequence = -2 WHERE sequence = 2",
                "UPDATE audit_event SET sequence = 2 WHERE sequence = 4",
                "UPDATE audit_event SET sequence = 4 WHERE sequence = -2",
            ],
            2,
            "prev_hash does not match",
        ),
    ],
    ids=["edited-reason", "edited-after", "deleted", "reordered"],
)
async def test_wavecast_audit_verify_names_the_first_broken_event(
    db: Runtime, tampering: list[str], broken_sequence: int, says: str
) -> None:
    await record_events(db, 6)
    before = await ids_by_sequence(db)
    await tamper(db, *tampering)
    broken_id = (await ids_by_sequence(db))[broken_sequence]
    if "sequence = -2" in tampering[0]:
        assert broken_id == before[4]  # the event that moved up from sequence 4

    result = await asyncio.to_thread(wavecast_verify, db.settings.database_url)
    assert result.returncode != 0
    assert f"event id {broken_id} (sequence {broken_sequence})" in result.stderr
    assert says in result.stderr


async def test_migration_0003_chains_the_events_already_there(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    await asyncio.to_thread(migrate.upgrade, url, "0002")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        for i, after in enumerate(TRICKY_VALUES):
            await conn.execute(
                text(
                    "INSERT INTO audit_event (occurred_at, actor, action, subject_type, "
                    "subject_id, after) VALUES (:at, 'cli:root', 'old.event', 'test', :sid, "
                    ":after)"
                ),
                {
                    "at": f"2026-11-0{i + 1} 10:00:00.000123",
                    "sid": str(i),
                    "after": json.dumps(after),
                },
            )
    await asyncio.to_thread(migrate.upgrade, url)
    verdict = await verify_chain(create_sessionmaker(engine))
    assert verdict.broken is None
    assert verdict.checked == len(TRICKY_VALUES)
    # New events carry on from the migrated head.
    async with unit_of_work(create_sessionmaker(engine)) as session:
        audit.record(session, SYSTEM, "new.event", subject_type="test")
    verdict = await verify_chain(create_sessionmaker(engine))
    assert verdict.broken is None
    assert verdict.head_sequence == len(TRICKY_VALUES) + 1
    await engine.dispose()


async def test_the_chain_lock_is_the_last_lock_a_transaction_takes(db: Runtime) -> None:
    """Every other change is written before the chain is locked, so a transaction holding the
    chain's lock never waits for a row lock (no deadlock, shortest serialisation)."""
    statements: list[str] = []

    def capture(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(" ".join(statement.split())[:80])

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with unit_of_work(db.sessionmaker) as session:
            audit.record(session, SYSTEM, "test.first", subject_type="test")
            await auth_service.create_key(
                session, db.settings, SYSTEM, name="k", scopes=[Scope.kill]
            )
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    lock = next(
        i for i, s in enumerate(statements) if "pg_advisory_xact_lock" in s or "WHERE 0 = 1" in s
    )
    key_insert = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO api_key"))
    audit_insert = next(
        i for i, s in enumerate(statements) if s.startswith("INSERT INTO audit_event")
    )
    assert key_insert < lock < audit_insert
    verdict = await verify_chain(db.sessionmaker)
    assert verdict.broken is None and verdict.checked == 2  # recorded order is kept
