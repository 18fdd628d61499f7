"""The arq worker: its jobs, its once-a-second tick, and how it starts and stops.

Clients (database engine, Redis, push providers) are built once at start-up and handed to
jobs through `WorkerContext`; job bodies are thin wrappers around testable functions, and
every job is safe to run twice (the ledger's leases and unique rows make it so).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections import Counter
from typing import Any

from arq import cron
from arq.connections import ArqRedis
from arq.worker import Retry, Worker, func

from app.campaigns.control import Control, provider_scope
from app.delivery.sender import PumpReport, SenderDeps, pump
from app.rollout import engine
from app.runtime import Runtime, redis_settings
from app.settings import Settings
from workers.context import WorkerContext
from workers.providers import build_providers

QUEUE = "wavecast:queue"
HEARTBEAT_TTL = 30
# Concurrent send jobs per campaign across all workers: enough to overlap provider latency,
# few enough that the throttle, not contention, sets the pace.
PUMPS_PER_CAMPAIGN = 4
# A send job runs at most this long, then the next tick asks for a fresh one. Short, so a
# job whose worker died holds its slot (arq's in-progress key) only briefly.
PUMP_BUDGET_SECONDS = 10.0
PUMP_TIMEOUT_SECONDS = 25

log = logging.getLogger("wavecast.worker")


def window(now: float) -> int:
    return int(now // PUMP_BUDGET_SECONDS)


def send_job_id(campaign_id: uuid.UUID | str, slot: int, now: float) -> str:
    return f"send:{campaign_id}:{slot}:{window(now)}"


async def live_workers(redis: ArqRedis) -> int:
    count = 0
    async for _key in redis.scan_iter(match="wavecast:worker:*", count=100):
        count += 1
    return max(1, count)


# Send jobs this process is running, per campaign.
_running: Counter[str] = Counter()


async def enqueue_pumps(redis: ArqRedis, campaign_ids: list[uuid.UUID]) -> int:
    """Ask for send jobs. Ids are deterministic per slot and time window: within a window a
    queued or running job is not duplicated; a job lost with Redis, or held by a dead worker,
    is replaced in the next window. Overlapping jobs are harmless: rows are leased."""
    queued = 0
    now = time.time()
    for campaign_id in campaign_ids:
        for slot in range(PUMPS_PER_CAMPAIGN):
            job = await redis.enqueue_job(
                "send_campaign",
                str(campaign_id),
                slot,
                window(now),
                _job_id=send_job_id(campaign_id, slot, now),
                _queue_name=QUEUE,
            )
            queued += job is not None
    return queued


async def send_campaign(
    ctx: dict[str, Any], campaign_id: str, slot: int, job_window: int
) -> dict[str, Any]:
    """Send a campaign's claimable rows for up to PUMP_BUDGET_SECONDS.

    A worker runs at most its share of a campaign's send jobs (⌈slots / live workers⌉) and
    hands the rest back to the queue, so every worker takes part in a large campaign.
    """
    if job_window < window(time.time()) - 1:
        return {"skipped": "a newer job has replaced this one"}
    wc = WorkerContext.of(ctx)
    share = math.ceil(PUMPS_PER_CAMPAIGN / await live_workers(wc.runtime.redis))
    if _running[campaign_id] >= share:
        raise Retry(defer=0.2)
    _running[campaign_id] += 1
    try:
        report: PumpReport = await pump(
            wc.sender, uuid.UUID(campaign_id), budget_seconds=PUMP_BUDGET_SECONDS
        )
    finally:
        _running[campaign_id] -= 1
    return {"sent": report.sent, "batches": report.batches, "stopped": report.stopped_because}


# arq starts the cron tick every second whether or not the last one has ended. A tick that
# releases a large wave or counts a large ledger can take seconds: without this, ticks pile
# up, queue behind each other's row locks and hold the job slots send jobs need.
_ticking = asyncio.Lock()


async def tick(ctx: dict[str, Any]) -> None:
    """Advance every campaign one step, reclaim dead leases, re-sync Redis, ask for sends."""
    if _ticking.locked():
        return
    async with _ticking:
        wc = WorkerContext.of(ctx)
        report = await engine.tick(wc.runtime.sessionmaker, wc.control, wc.runtime.settings)
        await enqueue_pumps(wc.runtime.redis, report.sendable)


async def heartbeat(ctx: dict[str, Any]) -> None:
    """Announce this worker as alive; operators read the set of live workers."""
    wc = WorkerContext.of(ctx)
    await wc.runtime.redis.set(f"wavecast:worker:{wc.worker_id}", "alive", ex=HEARTBEAT_TTL)


def build_worker(
    settings: Settings, *, burst: bool = False, handle_signals: bool = False, **overrides: Any
) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        runtime = await Runtime.start(settings)
        worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        control = Control(runtime.redis)
        providers = await build_providers(settings, runtime, worker_id)
        for name, cap in (
            ("fcm", settings.fcm_max_per_second),
            ("apns", settings.apns_max_per_second),
        ):
            await control.throttle.set_rate(provider_scope(name), float(cap))
        ctx["wavecast"] = WorkerContext(
            runtime=runtime,
            worker_id=worker_id,
            control=control,
            providers=providers,
            sender=SenderDeps(
                settings=settings,
                sessionmaker=runtime.sessionmaker,
                control=control,
                providers=providers.route,
                worker_id=worker_id,
            ),
        )
        log.info("worker started", extra={"worker": worker_id, "provider": settings.provider.value})

    async def shutdown(ctx: dict[str, Any]) -> None:
        wc: WorkerContext | None = ctx.get("wavecast")
        if wc is not None:
            await wc.providers.aclose()
            await wc.runtime.close()

    every_second = set(range(60))
    return Worker(
        functions=[
            # Tries are mostly hand-backs to other workers (Retry above); a job is still
            # bounded by its time window.
            func(
                send_campaign,
                name="send_campaign",
                keep_result=0,
                max_tries=200,
                timeout=PUMP_TIMEOUT_SECONDS,
            )
        ],
        cron_jobs=[
            cron(
                tick,
                name="tick",
                second=every_second,
                keep_result=0,
                run_at_startup=True,
                max_tries=1,
                timeout=60,
            ),
            cron(
                heartbeat,
                name="heartbeat",
                second=set(range(0, 60, 10)),
                run_at_startup=True,
                keep_result=0,
            ),
        ],
        redis_settings=redis_settings(settings),
        queue_name=QUEUE,
        on_startup=startup,
        on_shutdown=shutdown,
        burst=burst,
        handle_signals=handle_signals,
        max_jobs=PUMPS_PER_CAMPAIGN * 4,
        poll_delay=0.05,
        **overrides,
    )


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    async def main() -> None:
        # arq's Worker binds to the event loop current at construction: build it in this one.
        worker = build_worker(settings, burst=burst, handle_signals=True)
        await worker.main()

    asyncio.run(main())
