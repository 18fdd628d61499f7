"""The worker's jobs: send a campaign's rows, and the once-a-second tick.

Job bodies are thin wrappers around testable functions (`app.delivery.sender.pump`,
`app.rollout.engine.tick`); every job is safe to run twice (the ledger's leases and unique
rows make it so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import Counter
from typing import Any

from arq.worker import Retry
from redis.exceptions import RedisError

from app.db.types import utcnow
from app.delivery.sender import OUT_OF_BUDGET, PumpReport, pump
from app.rollout import engine
from app.settings import Settings
from workers.context import WorkerContext
from workers.coordination import (
    PUMPS_PER_CAMPAIGN,
    RELEASE_IF_OURS,
    TICK_LOCK_KEY,
    TICK_LOCK_TTL_MS,
    enqueue_pumps,
    holds_slot,
    keep_slot,
    keep_tick_lock,
    live_workers,
    slot_key,
)

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


log = logging.getLogger("wavecast.worker")

# Send jobs this process is running, per campaign.
_running: Counter[str] = Counter()


async def send_campaign(ctx: dict[str, Any], campaign_id: str, slot: int) -> dict[str, Any]:
    """Send a campaign's claimable rows for up to PUMP_BUDGET_SECONDS.

    A worker runs at most its share of a campaign's send jobs (⌈slots / live workers⌉) and
    hands the rest back to the queue, so every worker takes part in a large campaign.
    """
    wc = WorkerContext.of(ctx)
    redis = wc.runtime.redis
    job_id: str = ctx["job_id"]
    key = slot_key(campaign_id, slot)
    if not await holds_slot(redis, key, job_id):
        return {"skipped": "another job holds this slot"}
    share = math.ceil(PUMPS_PER_CAMPAIGN / await live_workers(redis))
    if _running[campaign_id] >= share:
        raise Retry(defer=0.2)
    _running[campaign_id] += 1
    keeper = asyncio.create_task(keep_slot(redis, key, job_id))
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
            if await holds_slot(redis, key, job_id):
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
    keeper = asyncio.create_task(keep_tick_lock(redis, token))
    try:
        report = await engine.tick(wc.runtime.sessionmaker, wc.control, wc.runtime.settings)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError, RedisError):
            await keeper
        with contextlib.suppress(RedisError):
            await redis.eval(RELEASE_IF_OURS, 1, TICK_LOCK_KEY, token)  # type: ignore[misc]
    await enqueue_pumps(redis, report.sendable)
