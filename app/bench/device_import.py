"""Device import throughput: NDJSON through the real importer into the configured database.

Prints devices/s for a first import (all new) and a second one (all updates), each the
median of `--repeat` runs on a freshly emptied device table.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import orjson
from sqlalchemy import text

from app.db.session import create_engine, create_sessionmaker
from app.demo import fake_registrations
from app.devices import importer

TARGET_PER_SECOND = 50_000


def ndjson(count: int) -> bytes:
    return b"\n".join(
        orjson.dumps(reg.model_dump(mode="json", exclude_none=True))
        for reg in fake_registrations(count, seed=11)
    )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1 << 20):
        yield data[start : start + (1 << 20)]


async def run(database_url: str, count: int, repeat: int) -> dict[str, float]:
    data = ndjson(count)
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    created: list[float] = []
    updated: list[float] = []
    try:
        for _ in range(repeat):
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(text("TRUNCATE device CASCADE"))
                else:
                    await conn.execute(text("DELETE FROM delivery"))
                    await conn.execute(text("DELETE FROM device"))
            for bucket in (created, updated):
                started = time.perf_counter()
                result = await importer.import_stream(sessionmaker, _chunks(data))
                elapsed = time.perf_counter() - started
                assert result.rejected_total == 0, result.rejected[:3]
                bucket.append(count / elapsed)
    finally:
        await engine.dispose()
    return {"new": statistics.median(created), "update": statistics.median(updated)}


def main(database_url: str, count: int, repeat: int) -> int:
    figures = asyncio.run(run(database_url, count, repeat))
    print(f"device import, {count} devices, median of {repeat} runs")
    print(f"  new devices      {figures['new']:>10,.0f} devices/s")
    print(f"  known devices    {figures['update']:>10,.0f} devices/s")
    print(f"  target           {TARGET_PER_SECOND:>10,} devices/s (new devices, PostgreSQL)")
    return 0 if figures["new"] >= TARGET_PER_SECOND else 1
