"""The arq worker: its jobs, its once-a-second tick, and how it starts and stops.

Clients (database engine, Redis, push providers) are built once at start-up and handed to
jobs through `WorkerContext`; job bodies are thin wrappers around testable functions, and
every job is safe to run twice (the ledger's leases and unique rows make it so).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections import Counter
from typing import Any

from arq import cron
from arq.connections import ArqRedis
from arq.worker import Retry, Worker, func
from redis.exceptions import RedisError

from app.campaigns.control import Control, provider_scope
from app.db.types import utcnow
from app.delivery.sender import OUT_OF_BUDGET, PumpReport, SenderDeps, provider_cap, pump
from app.rollout import engine
from app.runtime import Runtime, redis_settings
from app.settings import Settings
from workers.context import WorkerContext
from workers.providers import build_providers

QUEUE = "wavecast:queue"
# A worker announces itself every HEARTBEAT_EVERY seconds; one that stops (a crash, a
# SIGKILL) drops out of the fair-share count HEARTBEAT_TTL seconds later at most. Until
# then the live workers each take a smaller share of a campaign's send jobs than they
# could, so the TTL is short: a few missed beats, not half a minute.
HEARTBEAT_EVERY = 1
HEARTBEAT_TTL = 5
# Concurrent send jobs per campaign across all workers: enough to overlap provider latency,
# few enough that the throttle, not contention, sets the pace.
PUMPS_PER_CAMPAIGN = 4
# A send job starts no batch after this long, then asks for its successor.
PUMP_BUDGET_SECONDS = 10.0
# Headroom over a batch's provider call (settings.provider_timeout_seconds) for arq's timeout:
# a batch started just before the budget ran out still ends, recorded, before it (and one
# that does not is still recorded: the sender shields a batch from its job's cancellation).
PUMP_HEADROOM_SECONDS = 15.0
# Tries are mostly hand-backs to other workers (Retry below); this bounds them.
SEND_MAX_TRIES = 200


def pump_timeout(settings: Settings) -> float:
    """arq's timeout for a send job: its budget, then the longest its last batch can take."""
    return PUMP_BUDGET_SECONDS + settings.provider_timeout_seconds + PUMP_HEADROOM_SECONDS


# A worker that lost Redis tries again after this long, doubling up to the maximum.
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0
# A slot is held by one send job at a time through a Redis key, set when the job is queued
# and kept alive by the job while it runs (a job left waiting in the queue longer than the
# TTL finds its slot taken over and steps aside). A job whose worker died stops refreshing
# it, so the slot frees itself
# within SLOT_TTL_SECONDS and the next tick asks for a replacement: how soon a dead
# worker's rows are sent again is set by their lease, not by the queue.
SLOT_TTL_SECONDS = 3
SLOT_REFRESH_SECONDS = 1.0

log = logging.getLogger("wavecast.worker")


def slot_key(campaign_id: uuid.UUID | str, slot: int) -> str:
    return f"wavecast:pump:{campaign_id}:{slot}"


def heartbeat_key(worker_id: str) -> str:
    return f"wavecast:worker:{worker_id}"


async def live_workers(redis: ArqRedis) -> int:
    count = 0
    async for _key in redis.scan_iter(match="wavecast:worker:*", count=100):
        count += 1
    return max(1, count)


# Send jobs this process is running, per campaign.
_running: Counter[str] = Counter()


async def enqueue_pumps(redis: ArqRedis, campaign_ids: list[uuid.UUID]) -> int:
    """Ask for a send job for every free slot of every sendable campaign.

    A slot is taken (SET NX) before its job is queued, so a slot never has two jobs asked
    for at once; a job whose slot was taken over meanwhile steps aside when it starts.
    Overlapping jobs would be harmless anyway: rows are leased."""
    queued = 0
    for campaign_id in campaign_ids:
        for slot in range(PUMPS_PER_CAMPAIGN):
            job_id = f"send:{campaign_id}:{slot}:{uuid.uuid4().hex[:12]}"
            if not await redis.set(
                slot_key(campaign_id, slot), job_id, nx=True, ex=SLOT_TTL_SECONDS
            ):
                continue
            job = await redis.enqueue_job(
                "send_campaign", str(campaign_id), slot, _job_id=job_id, _queue_name=QUEUE
            )
            queued += job is not None
    return queued


async def _holds_slot(redis: ArqRedis, key: str, job_id: str) -> bool:
    """Refresh the slot's key if this job still holds it."""
    held = await redis.get(key)
    if held is None or held.decode() != job_id:
        return False
    await redis.expire(key, SLOT_TTL_SECONDS)
    return True


async def _keep_slot(redis: ArqRedis, key: str, job_id: str) -> None:
    while True:
        if not await _holds_slot(redis, key, job_id):
            return
        await asyncio.sleep(SLOT_REFRESH_SECONDS)


async def send_campaign(ctx: dict[str, Any], campaign_id: str, slot: int) -> dict[str, Any]:
    """Send a campaign's claimable rows for up to PUMP_BUDGET_SECONDS.

    A worker runs at most its share of a campaign's send jobs (⌈slots / live workers⌉) and
    hands the rest back to the queue, so every worker takes part in a large campaign.
    """
    wc = WorkerContext.of(ctx)
    redis = wc.runtime.redis
    job_id: str = ctx["job_id"]
    key = slot_key(campaign_id, slot)
    if not await _holds_slot(redis, key, job_id):
        return {"skipped": "another job holds this slot"}
    share = math.ceil(PUMPS_PER_CAMPAIGN / await live_workers(redis))
    if _running[campaign_id] >= share:
        raise Retry(defer=0.2)
    _running[campaign_id] += 1
    keeper = asyncio.create_task(_keep_slot(redis, key, job_id))
    started = time.monotonic()
    try:
        report: PumpReport = await pump(
            wc.sender, uuid.UUID(campaign_id), budget_seconds=PUMP_BUDGET_SECONDS
        )
    finally:
        _running[campaign_id] -= 1
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError, RedisError):
            await keeper
        # Free the slot now, unless a newer job holds it.
        with contextlib.suppress(RedisError):
            if await _holds_slot(redis, key, job_id):
                await redis.delete(key)
    if report.stopped_because == OUT_OF_BUDGET:
        # Rows are likely left: the successor is asked for now, not by the next tick, or
        # every slot of the campaign (their budgets run out together) would stand idle for
        # up to a second every PUMP_BUDGET_SECONDS.
        with contextlib.suppress(RedisError):
            await enqueue_pumps(redis, [uuid.UUID(campaign_id)])
    log.info(
        "send job finished",
        extra={
            "campaign_id": campaign_id,
            "slot": slot,
            "sent": report.sent,
            "other": report.other,
            "batches": report.batches,
            "stopped": report.stopped_because,
            "seconds": round(time.monotonic() - started, 4),
            "stage_seconds": {k: round(v, 4) for k, v in report.seconds.items()},
            # Since the process started, all jobs together (the delivery benchmark's figure).
            "payload_seconds": round(wc.providers.payload_seconds, 4),
        },
    )
    return {"sent": report.sent, "batches": report.batches, "stopped": report.stopped_because}


# arq starts a cron tick every second, on whichever worker takes it, whether or not the
# last one has ended. A tick that releases a large wave can take seconds; ticks running side
# by side would queue behind each other's row locks and hold the job slots send jobs need.
# One Redis lock across all workers lets one tick advance campaigns at a time; its short
# TTL, kept alive while the tick runs, frees it within seconds of a worker dying mid-tick.
TICK_LOCK_KEY = "wavecast:tick"
TICK_LOCK_TTL_MS = 5_000
TICK_LOCK_REFRESH_SECONDS = 1.0
_RELEASE_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


async def _keep_tick_lock(redis: ArqRedis, token: str) -> None:
    while True:
        await asyncio.sleep(TICK_LOCK_REFRESH_SECONDS)
        held = await redis.get(TICK_LOCK_KEY)
        if held is None or held.decode() != token:
            return
        await redis.pexpire(TICK_LOCK_KEY, TICK_LOCK_TTL_MS)


async def tick(ctx: dict[str, Any]) -> None:
    """Advance every campaign one step, reclaim dead leases, re-sync Redis, ask for sends.

    While another tick is still advancing campaigns, this one only asks for send jobs, so a
    long release never stops the sending of rows already in the ledger.
    """
    wc = WorkerContext.of(ctx)
    redis = wc.runtime.redis
    token = uuid.uuid4().hex
    if not await redis.set(TICK_LOCK_KEY, token, nx=True, px=TICK_LOCK_TTL_MS):
        await enqueue_pumps(redis, await engine.sendable(wc.runtime.sessionmaker, utcnow()))
        return
    keeper = asyncio.create_task(_keep_tick_lock(redis, token))
    try:
        report = await engine.tick(wc.runtime.sessionmaker, wc.control, wc.runtime.settings)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError, RedisError):
            await keeper
        with contextlib.suppress(RedisError):
            await redis.eval(_RELEASE_IF_OURS, 1, TICK_LOCK_KEY, token)  # type: ignore[misc]
    await enqueue_pumps(redis, report.sendable)


async def _beat(redis: ArqRedis, worker_id: str) -> None:
    """Announce this process as alive every HEARTBEAT_EVERY seconds until cancelled.

    A task of the process, not a cron job: arq runs each cron job once per instant across
    all workers, so a cron heartbeat would keep only one worker's key alive."""
    while True:
        with contextlib.suppress(RedisError):
            await redis.set(heartbeat_key(worker_id), "alive", ex=HEARTBEAT_TTL)
        await asyncio.sleep(HEARTBEAT_EVERY)


def build_worker(
    settings: Settings, *, burst: bool = False, handle_signals: bool = False, **overrides: Any
) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        runtime = await Runtime.start(settings)
        worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        control = Control(runtime.redis)
        providers = await build_providers(settings, runtime, worker_id)
        # Blocks any worker writes reach this process's requests already under way; the feed
        # stops with the providers, also when Redis is gone and arq's shutdown cannot run.
        providers.listen(runtime.redis, control.throttle)
        for name in ("fcm", "apns"):
            await control.throttle.set_rate(provider_scope(name), provider_cap(settings, name))
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
        await runtime.redis.set(heartbeat_key(worker_id), "alive", ex=HEARTBEAT_TTL)
        ctx["wavecast_heartbeat"] = asyncio.create_task(_beat(runtime.redis, worker_id))
        log.info("worker started", extra={"worker": worker_id, "provider": settings.provider.value})
        # What start-up built (modules, metadata, clients) lives as long as the process: out
        # of the collector's sight, a full collection no longer walks it, and a send is not
        # held up for tens of milliseconds while one runs (the throttle's windows saw that).
        gc.collect()
        gc.freeze()

    async def shutdown(ctx: dict[str, Any]) -> None:
        beat: asyncio.Task[None] | None = ctx.get("wavecast_heartbeat")
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        wc: WorkerContext | None = ctx.get("wavecast")
        if wc is not None:
            # Leave the fair-share count at once: the other workers take over this share.
            with contextlib.suppress(RedisError):
                await wc.runtime.redis.delete(heartbeat_key(wc.worker_id))
            await wc.control.watch.aclose()
            await wc.providers.aclose()
            await wc.runtime.close()

    every_second = set(range(60))
    return Worker(
        functions=[
            func(
                send_campaign,
                name="send_campaign",
                keep_result=0,
                max_tries=SEND_MAX_TRIES,
                timeout=pump_timeout(settings),
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
    asyncio.run(serve(settings, burst=burst))


async def serve(
    settings: Settings, *, burst: bool = False, stop: asyncio.Event | None = None
) -> None:
    """Run a worker until SIGTERM or SIGINT, or until `stop` is set when the caller owns the
    signals (in burst mode, until the queue is empty).

    On SIGTERM the worker takes no new job and lets the send jobs in progress finish (each
    starts batches for PUMP_BUDGET_SECONDS, and its last one ends within the provider
    timeout), so a rolling restart neither re-sends nor strands a
    leased row; what is still running after `pump_timeout` is cancelled, and its rows go
    back to the queue when their lease ends. Losing Redis does not end the process: the
    worker is built again once Redis answers, and the reconciler (the tick) restores from
    PostgreSQL whatever Redis lost.
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    delay = RECONNECT_FIRST_SECONDS
    while not stop.is_set():
        # arq's Worker binds to the event loop current at construction: build it in this one.
        worker = build_worker(settings, burst=burst)
        running = asyncio.create_task(worker.main())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        running.cancel()  # stops polling for jobs; the jobs themselves are separate tasks
        try:
            await running
            if burst:
                stop.set()
        except asyncio.CancelledError:
            pass
        except (RedisError, OSError) as exc:
            log.warning(
                "lost Redis; the worker starts again once it answers", extra={"error": str(exc)}
            )
        else:
            delay = RECONNECT_FIRST_SECONDS
        # Send jobs stop by themselves (their budget, or their next failed Redis call),
        # recording what they sent and giving back what they did not; cancelling them
        # instead could leave sent rows on a lease, to be sent again when it ends.
        jobs = [t for t in worker.tasks.values() if not t.done()]
        if jobs:
            await asyncio.wait(jobs, timeout=pump_timeout(settings))
        await _close(worker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(RECONNECT_MAX_SECONDS, delay * 2)


async def _close(worker: Worker) -> None:
    """Close the worker; when Redis is gone arq's own close fails before its shutdown hook,
    so the database engine and the providers are closed here instead."""
    try:
        await worker.close()
    except (RedisError, OSError):
        wc: WorkerContext | None = worker.ctx.get("wavecast")
        if wc is not None:
            with contextlib.suppress(Exception):
                await wc.providers.aclose()
            with contextlib.suppress(Exception):
                await wc.runtime.close()
