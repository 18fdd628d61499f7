"""Helpers shared by the campaign, engine and kill-switch tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
from sqlalchemy import func, select

from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.control.block_feed import CLIENT_NAME, BlockFeed
from app.control.plane import Control
from app.control.throttle import Throttle
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery.models import Delivery, SandboxMessage
from app.delivery.providers.local_block import LocalBlock
from app.delivery.sender import PumpReport, SenderDeps, pump
from app.devices import service as devices_service
from app.devices.schemas import DeviceRegistration
from app.rollout import engine
from app.runtime import Runtime
from app.settings import Settings
from workers.providers import build_providers

LIVE_CONTENT = {
    "title": "Your statement is ready",
    "body": "Log in to see your November statement and this month's offers.",
}


async def add_devices(
    runtime: Runtime, count: int, *, test_devices: int = 0, platform: str = "android"
) -> list[uuid.UUID]:
    """Register `count` devices straight through the device service (fast)."""
    now = utcnow()
    rows = []
    for i in range(count):
        reg = DeviceRegistration(
            token=f"{platform}-{uuid.uuid4().hex}",
            platform=platform,  # type: ignore[arg-type]
            locale="pl-PL" if i % 3 else "en-GB",
            app_version=f"5.{i % 13}.0",
            apns_environment="production" if platform == "ios" else None,  # type: ignore[arg-type]
        )
        row = devices_service.registration_row(reg, now)
        row["is_test_device"] = i < test_devices
        rows.append(row)
    ids = []
    for start in range(0, len(rows), 5000):
        chunk = rows[start : start + 5000]
        async with unit_of_work(runtime.sessionmaker) as session:
            await devices_service.register_many(session, chunk)
        ids += [r["id"] for r in chunk]
    return ids


def campaign_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "November statement",
        "kind": "live",
        "content": LIVE_CONTENT,
        "audience": {"rules": {"everyone": True}},
        "rollout": {"waves": [{"percent": 1, "hold_seconds": 0}, {"percent": 100}]},
        "throttle": {"per_second": 100000},
    }
    body.update(overrides)
    return body


async def sender_deps(runtime: Runtime, settings: Settings | None = None) -> SenderDeps:
    settings = settings or runtime.settings
    control = Control(runtime.redis)
    providers = await build_providers(settings, runtime, "test-worker")
    return SenderDeps(
        settings=settings,
        sessionmaker=runtime.sessionmaker,
        control=control,
        providers=providers.route,
        worker_id="test-worker",
    )


async def run_engine(
    runtime: Runtime,
    campaign_id: uuid.UUID,
    *,
    settings: Settings | None = None,
    until: set[CampaignStatus] | None = None,
    max_ticks: int = 200,
) -> list[PumpReport]:
    """Tick and send in this process, as a worker would, until the campaign stops."""
    settings = settings or runtime.settings
    until = until or {
        CampaignStatus.completed,
        CampaignStatus.paused,
        CampaignStatus.killed,
        CampaignStatus.cancelled,
    }
    deps = await sender_deps(runtime, settings)
    reports = []
    try:
        for _ in range(max_ticks):
            report = await engine.tick(runtime.sessionmaker, deps.control, settings)
            if campaign_id in report.sendable:
                reports.append(await pump(deps, campaign_id, budget_seconds=10))
            status = await campaign_status(runtime, campaign_id)
            if status in until:
                return reports
            await asyncio.sleep(0.01)
    finally:
        await deps.control.watch.aclose()
    raise AssertionError(f"campaign {campaign_id} still {status} after {max_ticks} ticks")


async def tick_until_released(runtime: Runtime, campaign_id: uuid.UUID, rows: int) -> None:
    """Tick the engine (no sending) until the campaign's ledger holds `rows` rows."""
    control = Control(runtime.redis)
    try:
        while len(await deliveries(runtime, campaign_id)) < rows:
            await engine.tick(runtime.sessionmaker, control, runtime.settings)
    finally:
        await control.watch.aclose()


async def campaign_status(runtime: Runtime, campaign_id: uuid.UUID) -> CampaignStatus:
    async with runtime.sessionmaker() as session:
        status = (
            await session.execute(select(Campaign.status).where(Campaign.id == campaign_id))  # type: ignore[arg-type]
        ).scalar_one()
    return CampaignStatus(status)


async def sandbox_count(runtime: Runtime, campaign_id: uuid.UUID) -> int:
    async with runtime.sessionmaker() as session:
        return int(
            (
                await session.execute(
                    select(func.count())
                    .select_from(SandboxMessage)
                    .where(
                        SandboxMessage.campaign_id == campaign_id  # type: ignore[arg-type]
                    )
                )
            ).scalar_one()
        )


async def deliveries(runtime: Runtime, campaign_id: uuid.UUID) -> list[Delivery]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(Delivery).where(Delivery.campaign_id == campaign_id)  # type: ignore[arg-type]
        )
        return list(rows.scalars().all())


async def create_and_start(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> uuid.UUID:
    created = await client.post("/v1/campaigns", json=body, headers=headers)
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    started = await client.post(f"/v1/campaigns/{campaign_id}/start", headers=headers)
    assert started.status_code == 200, started.text
    return uuid.UUID(campaign_id)


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "WAVECAST_DATABASE_URL": settings.effective_database_url,
        "WAVECAST_REDIS_URL": settings.redis_url,
        "WAVECAST_KEY_PEPPER": settings.key_pepper.get_secret_value(),
        "WAVECAST_JSON_LOGS": "false",
        "WAVECAST_LOG_LEVEL": "WARNING",
        # A short lease, so a killed worker's rows come back within seconds; the provider
        # calls of these tests take well under the 3 s it leaves them.
        "WAVECAST_LEASE_SECONDS": "5",
        "WAVECAST_PROVIDER_TIMEOUT_SECONDS": "3",
        # Several workers share this machine: no metrics endpoint unless a test names a port.
        "WAVECAST_WORKER_METRICS_PORT": "0",
    }
    env.update(extra)
    return env


@contextmanager
def worker_processes(
    settings: Settings, count: int = 1, **extra: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Real `wavecast worker` processes against the test database and Redis."""
    # Logs go to files, not pipes: an unread pipe that fills up would stall the worker.
    files = ExitStack()
    logs = [
        # Closed by `files` when the workers are gone.
        files.enter_context(tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log"))  # noqa: SIM115
        for _ in range(count)
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            env=worker_env(settings, **extra),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        for log in logs
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        files.close()


async def workers_alive(runtime: Runtime, count: int, *, within: float = 90) -> None:
    """Wait until `count` workers have announced themselves (their start-up heartbeat)."""

    async def enough() -> bool:
        return len(await runtime.redis.keys("wavecast:worker:*")) >= count

    await wait_for(enough, within=within)


async def wait_for(predicate: Any, *, within: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


async def listening_feed(runtime: Runtime, blocks: Mapping[str, LocalBlock]) -> BlockFeed:
    """A block feed into ``blocks``, started here once Redis counts its subscription."""
    throttle = Throttle(runtime.redis)
    feed = BlockFeed(runtime.redis, throttle, blocks)
    feed.start()

    async def subscribed() -> bool:
        [(_channel, count)] = await runtime.redis.pubsub_numsub(throttle.blocks_channel)
        return count >= 1

    await wait_for(subscribed, within=5)
    return feed


async def feed_connections(runtime: Runtime) -> list[int]:
    """Client ids of the block feeds subscribed on the suite's Redis database."""
    database = runtime.redis.connection_pool.connection_kwargs.get("db", 0)
    return [
        int(c["id"])
        for c in await runtime.redis.client_list()
        if c.get("name") == CLIENT_NAME and int(c["db"]) == database
    ]


async def approve(
    client: httpx.AsyncClient,
    runtime: Runtime,
    campaign_id: uuid.UUID | str,
    *,
    comment: str | None = None,
) -> dict[str, Any]:
    """Approve a campaign through the real endpoint, as a second human (four-eyes): a new
    human person with a `campaigns:approve` key, who wrote nothing of the campaign."""
    from app.auth import service as auth_service
    from app.auth.models import Scope
    from app.auth.principal import SYSTEM
    from app.people import service as people_service
    from app.people.schemas import PersonCreate

    async with unit_of_work(runtime.sessionmaker) as session:
        person = await people_service.create(
            session,
            SYSTEM,
            PersonCreate.model_validate(
                {"name": f"approver {uuid.uuid4().hex[:8]}", "kind": "human"}
            ),
        )
        key = await auth_service.create_key(
            session,
            runtime.settings,
            SYSTEM,
            name="approver",
            scopes=[Scope.campaigns_approve],
            person_id=person.id,
        )
    answer = await client.post(
        f"/v1/campaigns/{campaign_id}/approve",
        json={"comment": comment} if comment else None,
        headers={"Authorization": f"Bearer {key.raw}"},
    )
    assert answer.status_code == 200, answer.text
    approved: dict[str, Any] = answer.json()
    return approved
