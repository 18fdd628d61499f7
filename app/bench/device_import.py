"""Device import throughput: NDJSON through the real importer into the configured database.

Prints devices/s for a first import (all new) and a second one (all updates), each the
median of `--repeat` runs on a freshly emptied device table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import orjson
from sqlalchemy import text

from app.bench.report import Figure, at_least, reported
from app.db.session import create_engine, create_sessionmaker
from app.demo import fake_registrations
from app.devices import importer
from app.settings import Settings

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


DESCRIPTION = "device import throughput, new and known devices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    rates = asyncio.run(run(settings.effective_database_url, args.devices, args.repeat))
    name = f"{args.devices:,} devices, median of {args.repeat}"
    return [
        at_least("import", f"new devices/s ({name})", rates["new"], "devices/s", TARGET_PER_SECOND),
        reported("import", f"known devices/s ({name})", rates["update"], "devices/s"),
    ]
