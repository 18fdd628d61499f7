"""What a process builds once at start-up and hands to requests and jobs."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis, RedisSettings, create_pool
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
        redis = await create_pool(redis_settings(settings))
        return cls(settings, engine, create_sessionmaker(engine), redis)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()


def redis_settings(settings: Settings) -> RedisSettings:
    if not settings.redis_url:
        raise RuntimeError(
            "WAVECAST_REDIS_URL is empty: start the service with `wavecast run`, which starts "
            "an embedded Redis, or point WAVECAST_REDIS_URL at a Redis server"
        )
    rs = RedisSettings.from_dsn(settings.redis_url)
    # Fail fast: a Redis outage must surface as an error (and fail closed), not a long hang.
    rs.conn_timeout = 2
    rs.conn_retries = 1
    rs.conn_retry_delay = 0
    return rs
