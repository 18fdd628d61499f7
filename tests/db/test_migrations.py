from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import migrate
from app.db.registry import metadata


async def test_models_and_migrations_agree(migrated: str) -> None:
    # alembic check: autogenerate finds nothing to do against the migrated test database.
    await asyncio.to_thread(migrate.check, migrated)


async def test_migrations_apply_to_an_empty_sqlite_and_round_trip(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert {t.name for t in metadata.sorted_tables} <= tables
    await asyncio.to_thread(migrate.check, url)
    await asyncio.to_thread(_downgrade, url)
    async with engine.connect() as conn:
        left = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert left <= {"alembic_version"}
    await engine.dispose()


def _downgrade(url: str) -> None:
    from alembic import command

    command.downgrade(migrate.alembic_config(url), "base")


async def test_audit_log_is_append_only_on_postgres(migrated: str, is_postgres: bool) -> None:
    if not is_postgres:
        return  # the trigger is PostgreSQL's; SQLite is the single-machine default
    engine = create_async_engine(migrated)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO audit_event (occurred_at, actor, action, subject_type, "
                "sequence, prev_hash, hash) VALUES (now(), 'test', 'probe', 'test', -1, '', '')"
            )
        )
    refused = (
        "UPDATE audit_event SET actor = 'x'",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
    )
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    async with engine.begin() as conn:  # remove the probe as only a superuser can
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text("DELETE FROM audit_event"))
    await engine.dispose()
