"""Fixtures the fault tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.runtime import Runtime, connect_redis
from tests.reliability.support import PrivateRedis


@pytest.fixture
async def private_redis(db: Runtime) -> AsyncIterator[tuple[PrivateRedis, Runtime]]:
    """A redis-server of this test's own and a runtime (the suite's database) on it."""
    server = PrivateRedis()
    server.start()
    settings = db.settings.model_copy(update={"redis_url": server.url})
    runtime = Runtime(settings, db.engine, db.sessionmaker, connect_redis(settings))
    try:
        yield server, runtime
    finally:
        await runtime.redis.aclose()
        server.close()
