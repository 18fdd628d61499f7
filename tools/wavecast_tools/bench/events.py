"""Engagement events throughput: `POST /v1/events` into PostgreSQL.

A real `wavecast api` process (uvicorn, one process) and, in this process, `--concurrency`
HTTP connections each posting its next batch (`--batch` events, NDJSON) as soon as the last
is answered. The ledger holds `--deliveries` sent rows, split over `--months` campaigns, one
created in each of the last `--months` months, so the rows live in that many month partitions
of the ledger (app.delivery.partitions; default 12: a year of campaigns). Every row gets a
`received` and an `opened` report, in an order shuffled across rows (as reports from many
phones arrive), so a run stores 2 × deliveries events. Bodies are encoded before the clock
starts: the figure is the API's (parse, check, one statement per batch, commit), not the
driver's.

Figures (median of `--repeat` runs, each on an emptied event table):
- new events/s: accepted events / wall time of the whole run (target ≥ 20,000);
- repeated events/s: the same bodies again, all duplicates (the idempotent path);
- PostgreSQL alone: `app.events.repository.store` of the same batches on one connection,
  checked values already in hand (no HTTP, no parsing): what the statement costs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from datetime import timedelta

import httpx
import orjson
from sqlalchemy import text

from app.auth.models import Scope
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import partitions
from app.events import parse
from app.events import repository as events_repo
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_least, at_most, reported

DESCRIPTION = "engagement events/s through POST /v1/events (PostgreSQL)"
TARGET_PER_SECOND = 20_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=parse.MAX_EVENTS)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--months",
        type=int,
        default=12,
        help="month partitions the ledger's rows are spread over (one campaign each)",
    )


async def _prepare(settings: Settings, deliveries: int, months: int) -> tuple[str, list[int]]:
    """`deliveries` sent ledger rows, split over campaigns of the last `months` months (each
    in its month's partition); an events:write key."""
    runtime = await Runtime.start(settings)
    try:
        await stack.empty_stores(runtime)
        await stack.add_devices(runtime, deliveries, tag="events", platform="android")
        this_month = partitions.month_of(utcnow())
        share = -(-deliveries // months)
        for i in range(months):
            month = this_month - i
            campaign = await stack.start_campaign(runtime, tag="events", per_second=1)
            async with unit_of_work(runtime.sessionmaker) as session:
                await partitions.ensure(session, month)
                await session.execute(
                    text("UPDATE campaign SET ledger_month = :month WHERE id = :campaign"),
                    {"month": month, "campaign": campaign},
                )
                await session.execute(
                    text(
                        """
                        INSERT INTO delivery (campaign_id, device_id, ledger_month, wave, status,
                                              attempts, created_at, updated_at, sent_at)
                        SELECT :campaign, id, :month, 0, 'sent', 1, now(), now(),
                               now() - interval '1 min'
                        FROM device ORDER BY id OFFSET :skip LIMIT :share
                        """
                    ),
                    {"campaign": campaign, "month": month, "skip": i * share, "share": share},
                )
        async with runtime.engine.begin() as conn:
            await conn.execute(text("ANALYZE delivery"))
            refs = [int(r) for (r,) in await conn.execute(text("SELECT id FROM delivery"))]
        key = await stack.api_key(runtime, [Scope.events_write])
    finally:
        await runtime.close()
    return key, refs


def _events(refs: list[int]) -> list[dict[str, object]]:
    now = utcnow()
    events: list[dict[str, object]] = []
    for ref in refs:
        events.append({"ref": ref, "type": "received", "at": now.isoformat()})
        opened = now + timedelta(seconds=random.random() * 30)
        events.append({"ref": ref, "type": "opened", "at": opened.isoformat()})
    random.Random(7).shuffle(events)
    return events


def _bodies(events: list[dict[str, object]], batch: int) -> list[bytes]:
    return [
        b"\n".join(orjson.dumps(e) for e in events[i : i + batch])
        for i in range(0, len(events), batch)
    ]


async def _empty_events(settings: Settings) -> None:
    runtime = await Runtime.start(settings)
    try:
        async with runtime.engine.begin() as conn:
            await conn.execute(text("TRUNCATE engagement_event"))
    finally:
        await runtime.close()


async def _post_all(url: str, key: str, bodies: list[bytes], concurrency: int) -> dict[str, int]:
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0, "errors": 0}
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}

    async def connection() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, headers=headers) as client:
            while queue:
                body = queue.pop()
                answer = await client.post("/v1/events", content=body)
                if answer.status_code != 200:
                    totals["errors"] += 1
                    continue
                result = answer.json()
                totals["accepted"] += result["accepted"]
                totals["duplicates"] += result["duplicates"]
                totals["rejected"] += len(result["rejected"])

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return totals


async def _database_alone(settings: Settings, bodies: list[bytes]) -> float:
    """Events/s of `repository.store` alone on one connection, checked values in hand."""
    now = utcnow()
    checked = [parse.check(body, ndjson=True, now=now) for body in bodies]
    await _empty_events(settings)
    runtime = await Runtime.start(settings)
    try:
        started = time.perf_counter()
        count = 0
        for p in checked:
            async with unit_of_work(runtime.sessionmaker) as session:
                stored = await events_repo.store(
                    session, indexes=p.indexes, refs=p.refs, types=p.types, ats=p.ats, now=now
                )
            count += stored.accepted
        return count / (time.perf_counter() - started)
    finally:
        await runtime.close()


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    if not settings.effective_database_url.startswith("postgresql"):
        raise SystemExit("wavecast bench events: set WAVECAST_DATABASE_URL to a PostgreSQL db")
    if args.months < 1:
        raise SystemExit("wavecast bench events: --months is at least 1")
    key, refs = asyncio.run(_prepare(settings, args.deliveries, args.months))
    bodies = _bodies(_events(refs), args.batch)
    total = 2 * len(refs)
    work = stack.workdir("events")
    new: list[float] = []
    again: list[float] = []
    errors = 0
    with stack.api_process(settings, work) as url:
        for _ in range(args.repeat):
            asyncio.run(_empty_events(settings))
            for rates, expect in ((new, "accepted"), (again, "duplicates")):
                started = time.perf_counter()
                totals = asyncio.run(_post_all(url, key, bodies, args.concurrency))
                elapsed = time.perf_counter() - started
                errors += totals["errors"] + totals["rejected"]
                if totals[expect] != total:
                    raise SystemExit(f"wavecast bench events: {expect} {totals} of {total}")
                rates.append(total / elapsed)
    alone = asyncio.run(_database_alone(settings, bodies))
    setup = (
        f"{total:,} events in batches of {args.batch:,}, {args.concurrency} connections, "
        f"ledger in {args.months} month partitions, median of {args.repeat}"
    )
    return [
        at_least(
            "events",
            f"new events/s ({setup})",
            statistics.median(new),
            "events/s",
            TARGET_PER_SECOND,
        ),
        reported(
            "events", "repeated events/s (all duplicates)", statistics.median(again), "events/s"
        ),
        reported("events", "PostgreSQL alone, one connection: store, new/s", alone, "events/s"),
        at_most("events", "non-200 answers and rejected events", errors, "", 0),
    ]
