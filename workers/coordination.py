"""How worker processes share the work: heartbeats, send-job slots and the tick lock.

Everything here lives in Redis and expires by itself, so a worker that dies (a crash, a
SIGKILL) frees what it held within seconds, and nothing relies on in-process state.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from arq.connections import ArqRedis
from redis.exceptions import RedisError

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
# A slot is held by one send job at a time through a Redis key, set when the job is queued
# and kept alive by the job while it runs (a job left waiting in the queue longer than the
# TTL finds its slot taken over and steps aside). A job whose worker died stops refreshing
# it, so the slot frees itself
# within SLOT_TTL_SECONDS and the next tick asks for a replacement: how soon a dead
# worker's rows are sent again is set by their lease, not by the queue.
SLOT_TTL_SECONDS = 3
SLOT_REFRESH_SECONDS = 1.0


def slot_key(campaign_id: uuid.UUID | str, slot: int) -> str:
    return f"wavecast:pump:{campaign_id}:{slot}"


def heartbeat_key(worker_id: str) -> str:
    return f"wavecast:worker:{worker_id}"


async def live_workers(redis: ArqRedis) -> int:
    count = 0
    async for _key in redis.scan_iter(match="wavecast:worker:*", count=100):
        count += 1
    return max(1, count)


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


async def holds_slot(redis: ArqRedis, key: str, job_id: str) -> bool:
    """Refresh the slot's key if this job still holds it."""
    held = await redis.get(key)
    if held is None or held.decode() != job_id:
        return False
    await redis.expire(key, SLOT_TTL_SECONDS)
    return True


async def keep_slot(redis: ArqRedis, key: str, job_id: str) -> None:
    while True:
        if not await holds_slot(redis, key, job_id):
            return
        await asyncio.sleep(SLOT_REFRESH_SECONDS)


# arq starts a cron tick every second, on whichever worker takes it, whether or not the
# last one has ended. A tick that releases a large wave can take seconds; ticks running side
# by side would queue behind each other's row locks and hold the job slots send jobs need.
# One Redis lock across all workers lets one tick advance campaigns at a time; its short
# TTL, kept alive while the tick runs, frees it within seconds of a worker dying mid-tick.
TICK_LOCK_KEY = "wavecast:tick"
TICK_LOCK_TTL_MS = 5_000
TICK_LOCK_REFRESH_SECONDS = 1.0
RELEASE_IF_OURS = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


async def keep_tick_lock(redis: ArqRedis, token: str) -> None:
    while True:
        await asyncio.sleep(TICK_LOCK_REFRESH_SECONDS)
        held = await redis.get(TICK_LOCK_KEY)
        if held is None or held.decode() != token:
            return
        await redis.pexpire(TICK_LOCK_KEY, TICK_LOCK_TTL_MS)


async def beat(redis: ArqRedis, worker_id: str) -> None:
    """Announce this process as alive every HEARTBEAT_EVERY seconds until cancelled.

    A task of the process, not a cron job: arq runs each cron job once per instant across
    all workers, so a cron heartbeat would keep only one worker's key alive."""
    while True:
        with contextlib.suppress(RedisError):
            await redis.set(heartbeat_key(worker_id), "alive", ex=HEARTBEAT_TTL)
        await asyncio.sleep(HEARTBEAT_EVERY)
