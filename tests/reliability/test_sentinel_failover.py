"""Redis fails over under a running campaign: a primary, its replica and three sentinels of
these tests' own (real redis-server and redis-sentinel processes), two real `wavecast
worker` processes on the sandbox provider, and the API, all finding the primary through
the sentinels (WAVECAST_REDIS_SENTINELS).

The primary is SIGKILLed mid-campaign; the sentinels promote the replica about two seconds
later. What must hold:

- nothing is sent while the kill state cannot be read: from FENCE_SECONDS after the primary
  went (the most a batch already under a confirmed permit may still start) until the
  promotion, no message leaves;
- sending resumes by itself on the new primary, and the campaign completes with every
  device sent exactly once (the ledger against the provider's records);
- a stop issued during the failover (answered 503: recorded, not confirmed) is honoured
  after it: nothing leaves once the fences lapsed, the reconciler writes the closed global
  grant to the new primary from PostgreSQL, and the stop then confirms (200).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.control.fence import FENCE_SECONDS
from app.control.gate import GLOBAL_KEY
from app.db.types import utcnow
from app.delivery.models import SandboxMessage
from app.main import create_app
from app.runtime import Runtime, connect_redis
from tests.conftest import KeyMaker, bearer
from tests.reliability.sentinel import MASTER_NAME, SentinelCluster, require_sentinel
from tests.reliability.support import WorkerPool, ledger_figures, worker_pool
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    sandbox_count,
    wait_for,
    workers_alive,
)

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

DEVICES = 1500
RATE = 250
# A batch that read its permit as open just before the primary died may still start this
# long after (the fence's life, plus a renewal period and scheduling slack).
FENCE_LAPSE = timedelta(seconds=FENCE_SECONDS + 0.2)


@pytest.fixture
async def cluster(db: Runtime) -> AsyncIterator[tuple[SentinelCluster, Runtime]]:
    """The cluster, and a runtime (the suite's database) whose Redis is found through it."""
    server, sentinel = require_sentinel()
    nodes = SentinelCluster(server, sentinel)
    try:
        await asyncio.to_thread(nodes.start)
        settings = db.settings.model_copy(
            update={
                "redis_url": "",
                "redis_sentinels": nodes.sentinel_setting.split(","),
                "redis_sentinel_master": MASTER_NAME,
            }
        )
        runtime = Runtime(settings, db.engine, db.sessionmaker, connect_redis(settings))
        try:
            yield nodes, runtime
        finally:
            await runtime.redis.aclose()
    finally:
        nodes.close()


def workers(cluster: SentinelCluster, runtime: Runtime) -> AbstractContextManager[WorkerPool]:
    return worker_pool(
        runtime.settings,
        WAVECAST_REDIS_SENTINELS=cluster.sentinel_setting,
        WAVECAST_REDIS_SENTINEL_MASTER=MASTER_NAME,
    )


async def _start(client: httpx.AsyncClient, headers: dict[str, str]) -> uuid.UUID:
    body = campaign_body(
        rollout={"waves": [{"percent": 20, "hold_seconds": 0}, {"percent": 100}]},
        throttle={"per_second": RATE},
    )
    created = await client.post("/v1/campaigns", json=body, headers=headers)
    assert created.status_code == 201, created.text
    campaign_id = uuid.UUID(created.json()["id"])
    started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=headers)
    assert started.status_code == 200, started.text
    return campaign_id


async def _sent_between(
    runtime: Runtime, campaign_id: uuid.UUID, after: datetime, before: datetime | None = None
) -> int:
    """Messages the provider recorded as sent in (after, before]."""
    query = (
        select(func.count())
        .select_from(SandboxMessage)
        .where(
            SandboxMessage.campaign_id == campaign_id,  # type: ignore[arg-type]
            SandboxMessage.sent_at > after,  # type: ignore[arg-type]
        )
    )
    if before is not None:
        query = query.where(SandboxMessage.sent_at <= before)  # type: ignore[arg-type]
    async with runtime.sessionmaker() as session:
        return int((await session.execute(query)).scalar_one())


async def _sent_at_least(runtime: Runtime, campaign_id: uuid.UUID, n: int) -> bool:
    return await sandbox_count(runtime, campaign_id) >= n


async def _status_is(runtime: Runtime, campaign_id: uuid.UUID, status: CampaignStatus) -> bool:
    return await campaign_status(runtime, campaign_id) is status


async def _closed_grant(cluster: SentinelCluster, port: int) -> str | None:
    grant = await asyncio.to_thread(cluster.get, port, GLOBAL_KEY)
    return grant if grant.startswith("closed:") else None


async def _fail_over(cluster: SentinelCluster, how: str) -> tuple[datetime, int, datetime, int]:
    """Kill or freeze the primary; returns when it went, its port, when the replica was
    promoted and the new primary's port."""
    killed_at = utcnow()
    fail = cluster.kill_primary if how == "crash" else cluster.freeze_primary
    old = await asyncio.to_thread(fail)
    new = await asyncio.to_thread(cluster.wait_for_new_primary, old)
    return killed_at, old, utcnow(), new


@pytest.mark.parametrize("how", ["crash", "hang"])
async def test_failover_mid_campaign_sends_nothing_blind_and_loses_nothing(
    cluster: tuple[SentinelCluster, Runtime], make_key: KeyMaker, how: str
) -> None:
    """A crash (SIGKILL: connections refused at once) or a hang (SIGSTOP: connections stay
    open and nothing answers, as when a network drops every packet)."""
    nodes, runtime = cluster
    await add_devices(runtime, DEVICES)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as client:
        with workers(nodes, runtime) as pool:
            pool.spawn(2)
            await workers_alive(runtime, 2)
            campaign_id = await _start(client, operator)
            await wait_for(lambda: _sent_at_least(runtime, campaign_id, 300), within=60)

            killed_at, old, promoted_at, new = await _fail_over(nodes, how)
            # The window is real: the promotion came well after the fences lapsed.
            assert promoted_at - killed_at > FENCE_LAPSE, (killed_at, promoted_at)
            blind = await _sent_between(runtime, campaign_id, killed_at + FENCE_LAPSE, promoted_at)
            assert blind == 0, f"{blind} messages sent while no primary could be read"

            # Sending resumes by itself on the new primary, and the campaign completes.
            try:
                await wait_for(
                    lambda: _status_is(runtime, campaign_id, CampaignStatus.completed), within=90
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the workers said:\n{pool.logs()}") from None
            resumed = await _sent_between(runtime, campaign_id, promoted_at)
            assert resumed > 0
            assert all(p.poll() is None for p in pool.procs), "a worker died\n" + pool.logs()
            assert "lost Redis" in pool.logs() or "cannot renew" in pool.logs(), (
                "the workers never noticed the primary go"
            )
    figures = await ledger_figures(runtime, campaign_id)
    assert figures.rows == DEVICES
    assert dict(figures.statuses) == {"sent": DEVICES}
    assert figures.lost == 0
    assert figures.duplicates == 0, sorted(figures.duplicated_rows)[:10]
    print(
        f"\nfailover after a {how} {old} -> {new}: "
        f"{(promoted_at - killed_at).total_seconds():.2f}s without a primary, "
        f"{resumed} sent after the promotion, lost 0, duplicates 0"
    )


async def test_stop_during_failover_is_honoured_after_it(
    cluster: tuple[SentinelCluster, Runtime], make_key: KeyMaker
) -> None:
    nodes, runtime = cluster
    await add_devices(runtime, DEVICES)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    killer = bearer(await make_key(Scope.kill, name="on-call"))
    admin = bearer(await make_key(Scope.admin, name="head of ops"))
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as client:
        with workers(nodes, runtime) as pool:
            pool.spawn(2)
            await workers_alive(runtime, 2)
            campaign_id = await _start(client, operator)
            await wait_for(lambda: _sent_at_least(runtime, campaign_id, 300), within=60)

            killed_at = utcnow()
            old = await asyncio.to_thread(nodes.kill_primary)
            await asyncio.sleep(0.2)
            engaged = await client.post(
                "/v1/kill-switch", json={"reason": "incident"}, headers=killer
            )
            stopped_at = utcnow()
            # Issued during the failover: no sentinel had promoted anyone yet.
            assert await asyncio.to_thread(nodes.primary_port) in (old, None)
            assert engaged.status_code == 503, engaged.text
            assert engaged.json()["title"] == "Stop recorded, not yet confirmed"

            new = await asyncio.to_thread(nodes.wait_for_new_primary, old)
            promoted_at = utcnow()
            # The new primary learns the stop from PostgreSQL (the reconciler's tick).
            grant = await wait_for(lambda: _closed_grant(nodes, new), within=15)
            await asyncio.sleep(3.0)  # ticks and send jobs on the new primary
            quiet_from = max(stopped_at, killed_at + FENCE_LAPSE)
            after = await _sent_between(runtime, campaign_id, quiet_from)
            assert after == 0, f"{after} messages sent after the stop (promoted {promoted_at})"

            confirmed = await client.post(
                "/v1/kill-switch", json={"reason": "incident"}, headers=killer
            )
            assert confirmed.status_code == 200, confirmed.text
            assert confirmed.json()["in_flight_at_answer"] == 0
            assert await campaign_status(runtime, campaign_id) is CampaignStatus.paused
            held = await sandbox_count(runtime, campaign_id)
            assert held < DEVICES

            # Nothing was lost: released and resumed, the campaign completes.
            released = await client.post(
                "/v1/kill-switch/release", json={"reason": "incident over"}, headers=admin
            )
            assert released.status_code == 200, released.text
            resumed = await client.post(f"/v1/campaigns/{campaign_id}/resume", headers=operator)
            assert resumed.status_code == 200, resumed.text
            try:
                await wait_for(
                    lambda: _status_is(runtime, campaign_id, CampaignStatus.completed), within=90
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the workers said:\n{pool.logs()}") from None
    figures = await ledger_figures(runtime, campaign_id)
    assert figures.rows == DEVICES
    assert dict(figures.statuses) == {"sent": DEVICES}
    assert figures.lost == 0
    assert figures.duplicates == 0, sorted(figures.duplicated_rows)[:10]
    print(
        f"\nstop during failover {old} -> {new} "
        f"({(promoted_at - killed_at).total_seconds():.2f}s without a primary): "
        f"held at {held} of {DEVICES}, the new "
        f"primary's global grant {grant!r}, completed after the release, lost 0, duplicates 0"
    )
