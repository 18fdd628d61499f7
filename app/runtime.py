"""What a process builds once at start-up and hands to requests and jobs."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis, RedisSettings
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.db.session import create_engine, create_sessionmaker
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


def connect_redis(settings: Settings) -> ArqRedis:
    """A lazy client: the process starts even while Redis is down (`/readyz` reports it, and
    anything that needs Redis fails closed) and reconnects by itself when Redis is back."""
    _require_redis_url(settings)
    client: ArqRedis = ArqRedis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry_on_timeout=False,
    )
    return client


def _require_redis_url(settings: Settings) -> None:
    if not settings.redis_url:
        raise RuntimeError(
            "WAVECAST_REDIS_URL is empty: start the service with `wavecast run`, which starts "
            "an embedded Redis, or point WAVECAST_REDIS_URL at a Redis server"
        )


def redis_settings(settings: Settings) -> RedisSettings:
    _require_redis_url(settings)
    rs = RedisSettings.from_dsn(settings.redis_url)
    # Fail fast: a Redis outage must surface as an error (and fail closed), not a long hang.
    rs.conn_timeout = 2
    rs.conn_retries = 1
    rs.conn_retry_delay = 0
    return rs
