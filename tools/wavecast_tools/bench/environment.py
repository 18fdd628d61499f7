"""What every benchmark needs: a migrated database and a Redis, for the length of a run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.db import migrate
from app.embedded_redis import EmbeddedRedis
from app.settings import Settings


@contextmanager
def prepared(settings: Settings) -> Iterator[Settings]:
    """Settings whose database is migrated and whose Redis is running (embedded if need be)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.effective_database_url)
    if not settings.uses_embedded_redis:
        yield settings
        return
    with EmbeddedRedis(settings.data_dir / "bench-redis") as redis:
        yield settings.model_copy(update={"redis_url": redis.url})
