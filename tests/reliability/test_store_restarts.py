"""Redis and PostgreSQL restarted under a running campaign, on servers of these tests' own.

Redis restarts with its data lost (no persistence): the reconciler (the engine's tick)
rebuilds the queue, the grants and the rates from PostgreSQL. PostgreSQL restarts
(immediate shutdown): workers and the API reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.db import migrate
from app.main import create_app
from app.runtime import Runtime
from app.settings import Settings, normalise_database_url
from tests.conftest import KeyMaker, bearer
from tests.reliability.support import (
    PrivatePostgres,
    PrivateRedis,
    ledger_figures,
    postgres_bin,
    worker_pool,
)
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    sandbox_count,
    wait_for,
    workers_alive,
)

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

DEVICES = 2000
RATE = 250


def body() -> dict[str, object]:
    return campaign_body(
        rollout={"waves": [{"percent": 20, "hold_seconds": 0}, {"percent": 100}]},
        throttle={"per_second": RATE},
    )


async def _start(client: httpx.AsyncClient, headers: dict[str, str]) -> uuid.UUID:
    created = await client.post("/v1/campaigns", json=body(), headers=headers)
    assert created.status_code == 201, created.text
    campaign_id = uuid.UUID(created.json()["id"])
    started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=headers)
    assert started.status_code == 200, started.text
    return campaign_id


async def _sent_at_least(runtime: Runtime, campaign_id: uuid.UUID, n: int) -> bool:
    return await sandbox_count(runtime, campaign_id) >= n


async def _status_is(runtime: Runtime, campaign_id: uuid.UUID, status: CampaignStatus) -> bool:
    return await campaign_status(runtime, campaign_id) is status


async def _unchanged_for(runtime: Runtime, campaign_id: uuid.UUID, seconds: float) -> int:
    before = await sandbox_count(runtime, campaign_id)
    await asyncio.sleep(seconds)
    after = await sandbox_count(runtime, campaign_id)
    assert after == before, f"{after - before} messages sent while nothing may be sent"
    return after


async def test_redis_restart_with_its_data_lost(
    private_redis: tuple[PrivateRedis, Runtime], make_key: KeyMaker
) -> None:
    server, runtime = private_redis
    await add_devices(runtime, DEVICES)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    killer = bearer(await make_key(Scope.kill, name="on-call"))
    admin = bearer(await make_key(Scope.admin, name="head of ops"))
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as client:
        with worker_pool(runtime.settings, WAVECAST_LEASE_SECONDS="5") as pool:
            pool.spawn(2)
            await workers_alive(runtime, 2)
            campaign_id = await _start(client, operator)
            await wait_for(lambda: _sent_at_least(runtime, campaign_id, 200), within=60)

            # 1. Redis dies and comes back empty: the queue, the grants and the rates are gone.
            await runtime.redis.set("reliability:marker", "before the restart")
            server.stop()
            await asyncio.sleep(1.0)  # what was on the wire finishes
            at_loss = await _unchanged_for(runtime, campaign_id, 2.0)
            server.start()
            assert await runtime.redis.get("reliability:marker") is None, "Redis kept its data"
            try:
                await wait_for(
                    lambda: _sent_at_least(runtime, campaign_id, at_loss + 200), within=60
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the workers said:\n{pool.logs()}") from None
            assert all(p.poll() is None for p in pool.procs), "a worker died with Redis\n" + (
                pool.logs()
            )

            # 2. A stop while Redis is down is recorded, answered 503, and holds once it is back.
            server.stop()
            engaged = await client.post(
                "/v1/kill-switch", json={"reason": "incident"}, headers=killer
            )
            assert engaged.status_code == 503, engaged.text
            assert engaged.headers["content-type"] == "application/problem+json"
            assert engaged.json()["title"] == "Stop recorded, not yet confirmed"
            await asyncio.sleep(1.0)
            held = await _unchanged_for(runtime, campaign_id, 1.5)
            server.start()
            # The reconciler rewrites the closed global grant from PostgreSQL before any send.
            held = await _unchanged_for(runtime, campaign_id, 4.0)
            assert held == await _unchanged_for(runtime, campaign_id, 0.1)
            confirmed = await client.post(
                "/v1/kill-switch", json={"reason": "incident"}, headers=killer
            )
            assert confirmed.status_code == 200, confirmed.text
            assert confirmed.json()["in_flight_at_answer"] == 0
            assert await campaign_status(runtime, campaign_id) is CampaignStatus.paused

            released = await client.post(
                "/v1/kill-switch/release", json={"reason": "incident over"}, headers=admin
            )
            assert released.status_code == 200, released.text
            resumed = await client.post(f"/v1/campaigns/{campaign_id}/resume", headers=operator)
            assert resumed.status_code == 200, resumed.text
            await wait_for(
                lambda: _status_is(runtime, campaign_id, CampaignStatus.completed), within=120
            )
    figures = await ledger_figures(runtime, campaign_id)
    assert figures.rows == DEVICES
    assert figures.lost == 0
    assert dict(figures.statuses) == {"sent": DEVICES}
    print(
        f"\nRedis restart: lost={figures.lost}, duplicates={figures.duplicates}, "
        f"sent before the first loss {at_loss}, held at {held} while the stop was unconfirmed"
    )


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
async def private_postgres(settings: Settings) -> AsyncIterator[PrivatePostgres]:
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql")
    if not settings.effective_database_url.startswith("postgresql"):
        pytest.skip("the suite runs on SQLite (WAVECAST_TEST_DATABASE_URL is not PostgreSQL)")
    server = PrivatePostgres(bindir)
    await asyncio.to_thread(server.init)
    await asyncio.to_thread(server.start)
    try:
        await asyncio.to_thread(migrate.upgrade, normalise_database_url(server.url))
        yield server
    finally:
        await asyncio.to_thread(server.close)


async def test_postgres_restart_mid_campaign(
    private_postgres: PrivatePostgres, db: Runtime
) -> None:
    from app.auth import service as auth_service
    from app.auth.principal import SYSTEM
    from app.db.session import unit_of_work

    settings = db.settings.model_copy(
        update={"database_url": normalise_database_url(private_postgres.url)}
    )
    runtime = await Runtime.start(settings)
    try:
        await add_devices(runtime, DEVICES)
        async with unit_of_work(runtime.sessionmaker) as session:
            key = await auth_service.create_key(
                session, settings, SYSTEM, name="operator", scopes=[Scope.admin]
            )
        headers = bearer(key.raw)
        app = create_app(settings, runtime=runtime)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://wavecast.test"
        ) as client:
            with worker_pool(settings, WAVECAST_LEASE_SECONDS="5") as pool:
                pool.spawn(2)
                await workers_alive(runtime, 2)
                campaign_id = await _start(client, headers)
                await wait_for(lambda: _sent_at_least(runtime, campaign_id, 200), within=60)
                await asyncio.to_thread(private_postgres.stop, "immediate")
                down = await client.get("/readyz")
                assert down.status_code == 503, down.text
                await asyncio.sleep(3.0)
                await asyncio.to_thread(private_postgres.start)
                await wait_for(lambda: _ready(client), within=30)
                assert (
                    await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)
                ).status_code == 200
                await wait_for(
                    lambda: _status_is(runtime, campaign_id, CampaignStatus.completed), within=120
                )
                assert all(p.poll() is None for p in pool.procs), (
                    "a worker died with PostgreSQL\n" + (pool.logs())
                )
        figures = await ledger_figures(runtime, campaign_id)
    finally:
        await runtime.close()
    assert figures.rows == DEVICES
    assert figures.lost == 0
    assert dict(figures.statuses) == {"sent": DEVICES}
    print(f"\nPostgreSQL restart: lost={figures.lost}, duplicates={figures.duplicates}")


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200
