"""An unmigrated database is not ready: `/readyz` answers 503 naming `wavecast migrate` until
the schema is at the migrations' head, then 200 (the positive answer is kept)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import migrate
from app.main import create_app
from app.runtime import Runtime


@pytest.fixture
async def empty_database(database_url: str, test_dir: Path) -> AsyncIterator[str]:
    """A database of its own, with nothing in it: not even alembic_version."""
    if not database_url.startswith("postgresql"):
        path = test_dir / "readyz.db"
        path.unlink(missing_ok=True)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = make_url(database_url)
    name = f"{url.database}_readyz"
    admin = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.fixture
async def against(db: Runtime, empty_database: str) -> AsyncIterator[Runtime]:
    # `db` empties Redis: rate-limit buckets left by earlier tests must not answer here.
    settings = db.settings.model_copy(update={"database_url": empty_database})
    runtime = await Runtime.start(settings)
    yield runtime
    await runtime.close()


async def _ready(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get("/readyz")


async def test_readyz_is_503_until_the_schema_is_at_head(
    against: Runtime, empty_database: str
) -> None:
    app = create_app(against.settings, runtime=against)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        never = await _ready(client)
        assert never.status_code == 503, never.text
        assert never.headers["content-type"] == "application/problem+json"
        assert never.json()["checks"]["redis"] == "ok"
        assert never.json()["checks"]["database"].startswith("not migrated")
        assert "no migrations" in never.json()["detail"]
        assert "wavecast migrate" in never.json()["detail"]

        older = next(r for r in ("0007", "0006") if r not in migrate.head_revisions())
        await asyncio.to_thread(migrate.upgrade, empty_database, older)
        behind = await _ready(client)  # a negative answer is asked again
        assert behind.status_code == 503, behind.text
        assert f"at {older}" in behind.json()["detail"]
        assert "wavecast migrate" in behind.json()["detail"]

        await asyncio.to_thread(migrate.upgrade, empty_database)
        ready = await _ready(client)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}

        # The positive answer is kept: the probe no longer reads alembic_version.
        async with against.engine.begin() as conn:
            await conn.execute(text("DROP TABLE alembic_version"))
        assert (await _ready(client)).status_code == 200
    # A process starting now sees the truth again.
    fresh = create_app(against.settings, runtime=against)
    transport = httpx.ASGITransport(app=fresh)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await _ready(client)).status_code == 503


async def test_api_requests_on_an_unmigrated_database_are_503_not_500(
    against: Runtime, empty_database: str
) -> None:
    app = create_app(against.settings, runtime=against)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    forged = {"Authorization": f"Bearer wck_{'a' * 12}_{'x' * 43}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = [
            await client.get("/v1/campaigns", headers=forged),
            await client.post("/v1/devices", json={"token": "t"}, headers=forged),
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert "wavecast migrate" in answer.json()["detail"]
            assert answer.headers["retry-after"]
        await asyncio.to_thread(migrate.upgrade, empty_database)
        # Migrated while running: the next request reaches authentication.
        assert (await client.get("/v1/campaigns", headers=forged)).status_code == 401


def test_the_head_is_read_from_the_migration_scripts() -> None:
    heads = migrate.head_revisions()
    scripts = Path(migrate.ROOT / "alembic" / "versions").glob("*.py")
    assert len(heads) == 1
    assert any(f'revision: str = "{heads[0]}"' in p.read_text() for p in scripts)
