"""Device import throughput: NDJSON through the real importer into the configured database.

Prints devices/s for a first import (all new) and a second one (all updates), each the
median of `--repeat` runs on a freshly emptied device table. On PostgreSQL it also measures,
side by side, what the database alone does with the same rows on one connection (COPY of
rows already encoded + the merge, no Python parsing), with and without the two indexes
audience rules need (tags, app_version_key). The importer writes on two connections at once
(app.devices.importer.WRITERS), so it may pass that single-connection figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import orjson
from sqlalchemy import text

from app.db.session import create_engine, create_sessionmaker
from app.demo import fake_registrations
from app.devices import importer, lean
from app.devices import repository as repo
from app.devices import service as devices_service
from app.settings import Settings
from wavecast_tools.bench.report import Figure, at_least, reported

TARGET_PER_SECOND = 50_000
BATCH = importer.BATCH_ROWS


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
    rates = {"new": statistics.median(created), "update": statistics.median(updated)}
    if engine.dialect.name == "postgresql":
        rates.update(await database_alone(database_url, data, repeat))
    return rates


async def database_alone(database_url: str, data: bytes, repeat: int) -> dict[str, float]:
    """New devices/s of COPY + merge alone, with every index and without the rule indexes.

    Each measurement runs in one transaction that is rolled back (a DROP INDEX included),
    so the schema is never left changed."""
    values = [v for v in map(lean.parse, data.split(b"\n")) if v is not None]
    encoded = [
        repo.copy_rows(
            values[i : i + BATCH], devices_service.new_device_ids(len(values[i : i + BATCH]))
        )
        for i in range(0, len(values), BATCH)
    ]
    engine = create_engine(database_url)
    sessionmaker = create_sessionmaker(engine)
    found: dict[str, list[float]] = {"db_all": [], "db_without_rule_indexes": []}
    try:
        for _ in range(repeat):
            for name, drop in (("db_all", False), ("db_without_rule_indexes", True)):
                async with engine.begin() as conn:
                    await conn.execute(text("TRUNCATE device CASCADE"))
                async with sessionmaker() as session:
                    if drop:
                        await session.execute(
                            text("DROP INDEX ix_device_tags, ix_device_app_version_key")
                        )
                    started = time.perf_counter()
                    for rows in encoded:
                        await repo.merge_copy_text(session, rows)
                        await session.execute(text("TRUNCATE device_staging"))
                    found[name].append(len(values) / (time.perf_counter() - started))
                    await session.rollback()
    finally:
        await engine.dispose()
    return {name: statistics.median(rates) for name, rates in found.items()}


DESCRIPTION = "device import throughput, new and known devices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    rates = asyncio.run(run(settings.effective_database_url, args.devices, args.repeat))
    name = f"{args.devices:,} devices, median of {args.repeat}"
    figures = [
        at_least("import", f"new devices/s ({name})", rates["new"], "devices/s", TARGET_PER_SECOND),
        reported("import", f"known devices/s ({name})", rates["update"], "devices/s"),
    ]
    if "db_all" in rates:
        figures += [
            reported(
                "import",
                "PostgreSQL alone, one connection: COPY + merge, new/s",
                rates["db_all"],
                "devices/s",
            ),
            reported(
                "import",
                "PostgreSQL alone, one connection, without the tags/app_version_key indexes",
                rates["db_without_rule_indexes"],
                "devices/s",
            ),
            reported(
                "import", "importer / PostgreSQL alone", rates["new"] / rates["db_all"], "ratio"
            ),
            reported(
                "import",
                "rule indexes' cost (alone with / without)",
                rates["db_all"] / rates["db_without_rule_indexes"],
                "ratio",
            ),
        ]
    return figures
