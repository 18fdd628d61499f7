"""Every live worker stays in the fair-share count; one tick advances campaigns at a time."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import func, select

from app.auth.models import Scope
from app.db.session import unit_of_work
from app.delivery.models import Delivery
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    create_and_start,
    wait_for,
    worker_processes,
    workers_alive,
)
from workers.coordination import HEARTBEAT_TTL, TICK_LOCK_KEY, live_workers

pytestmark = pytest.mark.slow


async def test_every_worker_stays_counted_while_it_lives(db: Runtime) -> None:
    with worker_processes(db.settings, count=2) as procs:
        await workers_alive(db, 2)
        seen = []
        # Several heartbeat lifetimes: a worker whose key lapsed would be missed here.
        stop = time.monotonic() + 3 * HEARTBEAT_TTL
        while time.monotonic() < stop:
            seen.append(await live_workers(db.redis))
            await asyncio.sleep(0.25)
        assert min(seen) == 2, seen
        procs[0].kill()
        procs[0].wait()

        async def one_left() -> bool:
            return await live_workers(db.redis) == 1

        started = time.monotonic()
        while not await one_left():
            assert time.monotonic() - started < HEARTBEAT_TTL + 3, "dead worker still counted"
            await asyncio.sleep(0.1)


async def test_one_tick_at_a_time_and_a_dead_ticks_lock_frees_itself(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    await add_devices(db, 20)
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_operate))
    with worker_processes(db.settings, count=1):
        await workers_alive(db, 1)
        # Another worker is mid-tick (or died mid-tick): it holds the lock for 3 s more.
        await db.redis.set(TICK_LOCK_KEY, "elsewhere", px=3_000)
        held_at = time.monotonic()
        campaign_id = await create_and_start(client, headers, campaign_body())

        async def released() -> int:
            async with unit_of_work(db.sessionmaker) as session:
                count = await session.scalar(
                    select(func.count()).where(Delivery.campaign_id == campaign_id)
                )
            return int(count or 0)

        while time.monotonic() - held_at < 2.5:
            assert await released() == 0, "a second tick advanced campaigns beside the first"
            await asyncio.sleep(0.1)
        await wait_for(released, within=20)
