"""Shared fixtures: a migrated database and a Redis, real ones.

`WAVECAST_TEST_DATABASE_URL` / `WAVECAST_TEST_REDIS_URL` point the suite at PostgreSQL and
Redis (CI does); without them it uses a SQLite file and an embedded Redis server, so the
suite runs on a machine that has only Python. Each test starts from empty tables and an
empty Redis database. Fixtures here are opt-in: pure-logic tests use none of them.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.control.throttle import Throttle
from app.db import migrate
from app.db.registry import metadata
from app.db.session import unit_of_work
from app.embedded_redis import EmbeddedRedis
from app.main import create_app
from app.runtime import Runtime
from app.settings import Settings, normalise_database_url

TEST_PEPPER = "test-pepper"


@pytest.fixture(scope="session")
def test_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="wavecast-tests-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def redis_url(test_dir: Path) -> Iterator[str]:
    url = os.environ.get("WAVECAST_TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis(test_dir / "redis") as server:
        yield server.url


@pytest.fixture(scope="session")
def database_url(test_dir: Path) -> str:
    url = os.environ.get("WAVECAST_TEST_DATABASE_URL")
    return normalise_database_url(url) if url else f"sqlite+aiosqlite:///{test_dir}/test.db"


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


async def _reset_schema(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        # A fresh temporary directory per session: the SQLite file does not exist yet.
        return
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


@pytest.fixture(scope="session")
async def migrated(database_url: str) -> str:
    await _reset_schema(database_url)
    # Alembic's env runs its own event loop; keep it off this one.
    await asyncio.to_thread(migrate.upgrade, database_url)
    return database_url


@pytest.fixture(scope="session")
def settings(migrated: str, redis_url: str, test_dir: Path) -> Settings:
    return Settings(
        database_url=migrated,
        redis_url=redis_url,
        data_dir=test_dir,
        key_pepper=TEST_PEPPER,  # type: ignore[arg-type]
        json_logs=False,
    )


@pytest.fixture(scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = await Runtime.start(settings)
    yield rt
    await rt.close()


# Migration 0007's trigger refuses TRUNCATE on the append-only audit log.
AUDIT_NO_TRUNCATE = "audit_event_no_truncate"


async def truncate_all(runtime: Runtime) -> None:
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    async with runtime.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Lift only that one trigger, inside this transaction: DDL is transactional and
            # ALTER TABLE holds the table's ACCESS EXCLUSIVE lock (TRUNCATE takes it anyway)
            # until COMMIT, so no other session ever sees the log unguarded, a failed reset
            # rolls the trigger back on, and it needs table ownership, not the superuser's
            # session_replication_role (which would also silence every other trigger).
            await conn.execute(text(f"ALTER TABLE audit_event DISABLE TRIGGER {AUDIT_NO_TRUNCATE}"))
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            await conn.execute(text(f"ALTER TABLE audit_event ENABLE TRIGGER {AUDIT_NO_TRUNCATE}"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
async def db(runtime: Runtime) -> Runtime:
    """A clean database and Redis for one test."""
    await truncate_all(runtime)
    await runtime.redis.flushdb()
    return runtime


@pytest.fixture
async def elsewhere(redis_url: str) -> AsyncIterator[Throttle]:
    """The throttle as another worker process has it: a Redis client of its own."""
    other = Redis.from_url(redis_url)
    yield Throttle(other)
    await other.aclose()


@pytest.fixture
async def client(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(db.settings, runtime=db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield c


KeyMaker = Callable[..., Awaitable[str]]
PersonMaker = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def make_person(db: Runtime) -> PersonMaker:
    """A person (app.people), straight through the service: its id."""

    async def make(
        name: str | None = None, *, kind: str = "human", slack_user_id: str | None = None
    ) -> uuid.UUID:
        from app.people import service as people_service
        from app.people.schemas import PersonCreate

        body = PersonCreate.model_validate(
            {
                "name": name or f"person {uuid.uuid4().hex[:8]}",
                "kind": kind,
                "slack_user_id": slack_user_id,
            }
        )
        async with unit_of_work(db.sessionmaker) as session:
            person = await people_service.create(session, SYSTEM, body)
        return person.id

    return make


@pytest.fixture
def make_key(db: Runtime) -> KeyMaker:
    """A key with `scopes`, for `person` (an id) or, by default, for a new service person
    of its own named after the key."""

    async def make(
        *scopes: Scope | str, name: str = "test key", person: uuid.UUID | None = None
    ) -> str:
        async with unit_of_work(db.sessionmaker) as session:
            created = await auth_service.create_key(
                session,
                db.settings,
                SYSTEM,
                name=name,
                scopes=[Scope(s) for s in scopes],
                person_id=person,
            )
        return created.raw

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
