"""What a process builds once at start-up and hands to requests and jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from arq.connections import ArqRedis
from redis.asyncio.connection import parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.session import create_engine, create_sessionmaker
from app.notify import capture  # noqa: F401  (its listener writes every decision's notifications)
from app.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        engine = create_engine(settings.effective_database_url)
        return cls(settings, engine, create_sessionmaker(engine), connect_redis(settings))

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()


# Every Redis client of a process (the API's, the worker's own, arq's queue: all built by
# `connect_redis`) fails fast: an outage, or a primary that hangs, must surface as an error
# (and fail closed), never as a long wait.
CONNECT_TIMEOUT_SECONDS = 2
COMMAND_TIMEOUT_SECONDS = 5
# Asking a sentinel where the primary is: short, so a dead sentinel costs little before the
# next one is asked.
SENTINEL_TIMEOUT_SECONDS = 1


def connect_redis(settings: Settings) -> ArqRedis:
    """A lazy client: the process starts even while Redis is down (`/readyz` reports it, and
    anything that needs Redis fails closed) and reconnects by itself when Redis is back.

    With WAVECAST_REDIS_SENTINELS, each new connection asks the sentinels for the current
    primary: during a failover every command fails (no sentinel names a primary that is
    up), and once a replica is promoted the next connection goes to it."""
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": COMMAND_TIMEOUT_SECONDS,
        # No quiet reconnect-and-retry inside the client: every Redis error reaches the
        # caller. The send path fails closed on it, and a subscription catches up on what it
        # missed only when it sees its connection drop (`app.redis_subscription.follow`).
        "retry_on_timeout": False,
        "retry_on_error": [],
    }
    if settings.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_addresses,
            sentinel_kwargs={
                "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
                "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            },
        )
        client = sentinel.master_for(
            settings.redis_sentinel_master,
            redis_class=_SentinelArqRedis,
            **_database_and_credentials(settings),
            **timeouts,
        )
        return cast(ArqRedis, client)
    _require_redis_url(settings)
    plain: ArqRedis = ArqRedis.from_url(settings.redis_url, **timeouts)
    return plain


class _SentinelArqRedis(ArqRedis):
    """A client of the primary that also closes its connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


def _database_and_credentials(settings: Settings) -> dict[str, Any]:
    """With Sentinel, WAVECAST_REDIS_URL (optional) names only the database and credentials."""
    if not settings.redis_url:
        return {"db": 0}
    parsed = parse_url(settings.redis_url)
    return {
        "db": int(parsed.get("db", 0)),
        "username": parsed.get("username"),
        "password": parsed.get("password"),
    }


def _require_redis_url(settings: Settings) -> None:
    if not settings.redis_url:
        raise RuntimeError(
            "WAVECAST_REDIS_URL is empty: start the service with `wavecast run`, which starts "
            "an embedded Redis, or point WAVECAST_REDIS_URL at a Redis server (or "
            "WAVECAST_REDIS_SENTINELS at its sentinels)"
        )
