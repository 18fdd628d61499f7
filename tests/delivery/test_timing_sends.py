"""The timing rules through the real engine and send path (sandbox provider, real PostgreSQL
and Redis): local-time delivery, quiet hours, frequency caps across campaigns, and the
send-by deadline. The arithmetic itself is tested in tests/timing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select, update

from app.auth.models import Scope
from app.campaigns.models import Campaign, CampaignWave
from app.campaigns.state import CampaignStatus
from app.db.types import utcnow
from app.delivery import ledger
from app.delivery.models import Delivery, SandboxMessage
from app.delivery.sender import pump
from app.devices.models import Device
from app.rollout import engine
from app.runtime import Runtime
from app.settings import Settings
from app.timing.schedule import next_local_occurrence, parse_local_time
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    deliveries,
    run_engine,
    sandbox_count,
    sender_deps,
    wait_for,
    worker_processes,
    workers_alive,
)

WRITER = (Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)


async def _set_zones(db: Runtime, zones: list[str | None]) -> None:
    async with db.sessionmaker() as session:
        ids = list((await session.execute(select(Device.id).order_by(Device.id))).scalars())
        for device_id, zone in zip(ids, zones, strict=True):
            await session.execute(
                update(Device).where(Device.id == device_id).values(timezone=zone)  # type: ignore[arg-type]
            )
        await session.commit()


async def _tick_and_pump(db: Runtime, settings: Settings, campaign_id: uuid.UUID) -> None:
    deps = await sender_deps(db, settings)
    try:
        report = await engine.tick(db.sessionmaker, deps.control, settings)
        if campaign_id in report.sendable:
            await pump(deps, campaign_id, budget_seconds=5)
    finally:
        await deps.control.watch.aclose()


async def test_local_time_rows_wait_for_each_zones_instant_and_hold_the_wave_open(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    zones = ["Asia/Kolkata", "Asia/Kolkata", "America/New_York", "Pacific/Chatham", None]
    await add_devices(db, len(zones))
    await _set_zones(db, zones)
    # Two hours ahead of now on a UTC clock: in the future in every one of these zones.
    local = (utcnow() + timedelta(hours=2)).strftime("%H:%M")
    headers = bearer(await make_key(*WRITER))
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 100}], "local_time": local}),
    )
    for _ in range(3):
        await _tick_and_pump(db, db.settings, campaign_id)
    assert await sandbox_count(db, campaign_id) == 0, "nothing is due yet"

    async with db.sessionmaker() as session:
        wave = (
            await session.execute(
                select(CampaignWave).where(CampaignWave.campaign_id == campaign_id)
            )  # type: ignore[arg-type]
        ).scalar_one()
        rows = (
            await session.execute(
                select(Delivery.status, Delivery.next_attempt_at, Device.timezone)
                .join(Device, Device.id == Delivery.device_id)  # type: ignore[arg-type]
                .where(Delivery.campaign_id == campaign_id)  # type: ignore[arg-type]
            )
        ).all()
    assert wave.released_at is not None and wave.status == "sending"
    assert len(rows) == len(zones)
    for status, due, zone in rows:
        tz = ZoneInfo(zone or "UTC")
        assert status == "queued"
        assert due == next_local_occurrence(parse_local_time(local), tz, wave.released_at)
        # Independently of the arithmetic: the zone's wall clock reads the local time then,
        # and it is the next such instant.
        assert due.astimezone(tz).strftime("%H:%M") == local
        assert wave.released_at <= due < wave.released_at + timedelta(hours=25)

    # New York's instant arrives (its rows' due time is now): those rows go, the others wait
    # and the wave is not finished, so its hold has not started.
    async with db.sessionmaker() as session:
        ny = select(Device.id).where(Device.timezone == "America/New_York")  # type: ignore[arg-type]
        await session.execute(
            update(Delivery)
            .where(Delivery.device_id.in_(ny))  # type: ignore[attr-defined]
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    for _ in range(3):
        await _tick_and_pump(db, db.settings, campaign_id)
    statuses = Counter(r.status for r in await deliveries(db, campaign_id))
    assert statuses == {"sent": 1, "queued": 4}
    assert await campaign_status(db, campaign_id) is CampaignStatus.running


def _window_ending_soon() -> tuple[str, datetime]:
    """A UTC quiet window that covers now and ends at a minute boundary 10 to 70 s away."""
    now = datetime.now(UTC)
    end = (now + timedelta(seconds=70)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=30)
    return f"{start:%H:%M}-{end:%H:%M}", end


@pytest.mark.slow
async def test_quiet_hours_hold_every_send_until_they_end_then_the_throttle_spreads_them(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 24)  # no time zone: the default, UTC
    window, end = _window_ending_soon()
    settings = db.settings.model_copy(update={"quiet_hours": window})
    headers = bearer(await make_key(*WRITER))
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": 8}),
    )
    deadline = time.monotonic() + 150
    while await campaign_status(db, campaign_id) is not CampaignStatus.completed:
        assert time.monotonic() < deadline, "the campaign did not complete"
        await _tick_and_pump(db, settings, campaign_id)
        await asyncio.sleep(0.05)
    async with db.sessionmaker() as session:
        sent_at = list(
            (
                await session.execute(
                    select(SandboxMessage.sent_at).where(SandboxMessage.campaign_id == campaign_id)  # type: ignore[arg-type]
                )
            ).scalars()
        )
    assert len(sent_at) == 24
    assert min(sent_at) >= end, "a push left inside quiet hours"
    # No stampede at the window's end: the campaign's throttle (8/s, bursts of 16) spreads them.
    per_second = Counter(int(t.timestamp()) for t in sent_at)
    assert max(per_second.values()) <= 16
    assert max(sent_at) - min(sent_at) >= timedelta(seconds=0.75)
    rows = await deliveries(db, campaign_id)
    assert {r.status for r in rows} == {"sent"} and {r.attempts for r in rows} == {1}


async def test_a_frequency_cap_holds_across_two_campaigns_racing_for_the_same_devices(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 30)
    settings = db.settings.model_copy(update={"frequency_cap": "1/24h"})
    headers = bearer(await make_key(*WRITER))
    body = campaign_body(rollout={"waves": [{"percent": 100}]})
    first = await create_and_start(client, headers, body)
    second = await create_and_start(client, headers, body)
    # Two send loops at once, as two workers would run them.
    await asyncio.gather(
        run_engine(db, first, settings=settings), run_engine(db, second, settings=settings)
    )
    rows = await deliveries(db, first) + await deliveries(db, second)
    sent = Counter(r.device_id for r in rows if r.status == "sent")
    capped = Counter(r.device_id for r in rows if r.status == "capped")
    assert len(sent) == 30 and set(sent.values()) == {1}, "each device got exactly one"
    assert set(capped) == set(sent) and set(capped.values()) == {1}
    assert {r.error_code for r in rows if r.status == "capped"} == {"frequency_cap"}
    views = [
        (await client.get(f"/v1/campaigns/{c}", headers=headers)).json() for c in (first, second)
    ]
    assert sum(v["waves"][0]["capped"] for v in views) == 30
    assert sum(v["waves"][0]["sent"] for v in views) == 30

    # Critical campaigns and test campaigns are exempt.
    critical = bearer(await make_key(*WRITER, Scope.campaigns_critical))
    urgent = await create_and_start(
        client, critical, campaign_body(rollout={"waves": [{"percent": 100}]}, priority="critical")
    )
    await run_engine(db, urgent, settings=settings)
    assert {r.status for r in await deliveries(db, urgent)} == {"sent"}
    async with db.sessionmaker() as session:
        await session.execute(update(Device).values(is_test_device=True))
        await session.commit()
    rehearsal = await create_and_start(
        client,
        headers,
        campaign_body(
            kind="test",
            content={"title": "QA", "body": "test push"},
            rollout={"waves": [{"percent": 100}]},
        ),
    )
    await run_engine(db, rehearsal, settings=settings)
    assert {r.status for r in await deliveries(db, rehearsal)} == {"sent"}


async def test_rows_not_sent_by_the_deadline_expire_and_providers_get_the_time_left(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 12)
    headers = bearer(await make_key(*WRITER))
    expires = utcnow() + timedelta(seconds=2.5)
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(
            rollout={"waves": [{"percent": 100}]},
            throttle={"per_second": 2},
            expires_at=expires.isoformat(),
        ),
    )
    await run_engine(db, campaign_id, max_ticks=1000)
    rows = await deliveries(db, campaign_id)
    statuses = Counter(r.status for r in rows)
    assert set(statuses) == {"sent", "expired"} and statuses["expired"] >= 4, statuses
    # Every push left before the deadline (recording its answer may come just after).
    assert all(r.sent_at is None or r.sent_at < expires + timedelta(seconds=1) for r in rows)
    async with db.sessionmaker() as session:
        messages = list(
            (
                await session.execute(
                    select(SandboxMessage).where(SandboxMessage.campaign_id == campaign_id)  # type: ignore[arg-type]
                )
            ).scalars()
        )
    assert messages and all(m.sent_at < expires for m in messages), "a push left late"
    for message in messages:
        payload: dict[str, Any] = message.payload
        android = payload.get("android") or payload.get("message", {}).get("android", {})
        ttl = android.get("ttl") if isinstance(android, dict) else None
        if ttl is not None:
            assert 1 <= int(ttl.removesuffix("s")) <= 3, ttl
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    assert view["waves"][0]["expired"] == statuses["expired"]


async def test_resuming_past_the_deadline_says_so_and_sends_nothing(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 5)
    headers = bearer(await make_key(*WRITER))
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(expires_at=(utcnow() + timedelta(seconds=1)).isoformat()),
    )
    paused = await client.post(
        f"/v1/campaigns/{campaign_id}/pause", json={"reason": "checking"}, headers=headers
    )
    assert paused.status_code == 200
    await asyncio.sleep(1.2)
    resumed = await client.post(f"/v1/campaigns/{campaign_id}/resume", headers=headers)
    assert resumed.status_code == 409, resumed.text
    assert "deadline" in resumed.json()["detail"]
    assert await sandbox_count(db, campaign_id) == 0


@pytest.mark.slow
async def test_a_frequency_cap_holds_across_two_worker_processes(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    """Two real `wavecast worker` processes share two campaigns to the same devices, with a
    cap of one live campaign per device a day: each device gets exactly one."""
    # Enough rows at a low enough rate that sending lasts seconds: each worker runs at most
    # its share of a campaign's send jobs, but a campaign finished within the first second
    # could still be sent by one worker alone, and the test would then not show the cap
    # holding across processes.
    await add_devices(db, 2000)
    headers = bearer(await make_key(*WRITER))
    body = campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": 200})
    with worker_processes(db.settings, 2, WAVECAST_FREQUENCY_CAP="1/24h"):
        await workers_alive(db, 2)
        first = await create_and_start(client, headers, body)
        second = await create_and_start(client, headers, body)

        async def both_done() -> bool:
            return {await campaign_status(db, c) for c in (first, second)} == {
                CampaignStatus.completed
            }

        await wait_for(both_done, within=120, interval=0.2)
    rows = await deliveries(db, first) + await deliveries(db, second)
    sent = Counter(r.device_id for r in rows if r.status == "sent")
    assert len(sent) == 2000 and set(sent.values()) == {1}
    assert Counter(r.status for r in rows) == {"sent": 2000, "capped": 2000}
    async with db.sessionmaker() as session:
        workers = set(
            (
                await session.execute(
                    select(SandboxMessage.worker).where(
                        SandboxMessage.campaign_id.in_([first, second])  # type: ignore[attr-defined]
                    )
                )
            ).scalars()
        )
    assert len(workers) == 2, "both workers sent"


async def test_a_local_time_release_larger_than_a_statements_parameters_is_scheduled_whole(
    db: Runtime,
) -> None:
    """A release chunk of a local-time wave looks up its devices' time zones: 40,000 ids are
    more than one statement may carry as parameters (asyncpg: 32,767)."""
    ids = await add_devices(db, 40_000)
    await _set_zones_of(db, ids[::2], "Asia/Kathmandu")
    campaign_id = uuid.uuid4()
    async with db.sessionmaker() as session:
        session.add(
            Campaign(
                id=campaign_id,
                name="big local",
                kind="live",
                content={"title": "Your statement", "body": "Log in to see it."},
                audience_rules={"everyone": True},
                throttle_per_second=100,
                failure_threshold_percent=Decimal(5),
                rotation=1,
                created_by="test",
            )
        )
        await session.commit()
    due = datetime(2026, 12, 7, 3, 45, tzinfo=UTC)
    elsewhere = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    async with db.sessionmaker() as session:
        added = await ledger.add_members(
            session,
            campaign_id=campaign_id,
            wave=0,
            device_ids=ids,
            now=utcnow(),
            due_in=lambda zone: due if zone == "Asia/Kathmandu" else elsewhere,
        )
        await session.commit()
    assert added == 40_000
    async with db.sessionmaker() as session:
        counted = Counter(
            (
                await session.execute(
                    select(Delivery.next_attempt_at).where(Delivery.campaign_id == campaign_id)  # type: ignore[arg-type]
                )
            ).scalars()
        )
    assert counted == {due: 20_000, elsewhere: 20_000}


async def _set_zones_of(db: Runtime, ids: list[uuid.UUID], zone: str) -> None:
    async with db.sessionmaker() as session:
        for start in range(0, len(ids), 5_000):
            await session.execute(
                update(Device)
                .where(Device.id.in_(ids[start : start + 5_000]))  # type: ignore[attr-defined]
                .values(timezone=zone)
            )
        await session.commit()
