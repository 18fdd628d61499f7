"""One claimed batch in the sender, on the real database and Redis: a rate cut between the
claim and the send, and Redis losing the campaign's rate after a stop."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from app.auth.models import Scope
from app.campaigns.models import Campaign, CampaignKind
from app.campaigns.schemas import Content
from app.control.gate import GateClosed
from app.control.plane import Control, paced, throttle_scope
from app.control.throttle_math import batch_size_for_rate
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger, sender
from app.delivery.models import DeliveryStatus
from app.delivery.timing_rules import send_timing
from app.devices.models import Device
from app.rollout import engine
from app.runtime import Runtime
from app.timing.schedule import QuietHours
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    create_and_start,
    deliveries,
    sandbox_count,
    sender_deps,
)


async def _operator(make_key: KeyMaker) -> dict[str, str]:
    return bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )


async def _released(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, devices: int, rate: int
) -> tuple[uuid.UUID, dict[str, str]]:
    await add_devices(db, devices)
    headers = await _operator(make_key)
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": rate}),
    )
    deps = await sender_deps(db)
    await engine.tick(db.sessionmaker, deps.control, db.settings)
    return campaign_id, headers


async def test_rows_claimed_before_a_rate_cut_leave_at_the_new_rate(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    campaign_id, headers = await _released(client, make_key, db, devices=600, rate=10_000)
    deps = await sender_deps(db)
    old_batch = batch_size_for_rate(paced(10_000), max_batch=db.settings.chunk_size)
    lease, now = uuid.uuid4(), utcnow()
    async with unit_of_work(db.sessionmaker) as session:
        rows = await ledger.claim(
            session,
            campaign_id=campaign_id,
            limit=old_batch,
            lease_token=lease,
            lease_until=now + timedelta(seconds=60),
            now=now,
        )
    assert len(rows) == old_batch
    cut = await client.patch(
        f"/v1/campaigns/{campaign_id}", json={"throttle": {"per_second": 100}}, headers=headers
    )
    assert cut.status_code == 200, cut.text
    async with unit_of_work(db.sessionmaker) as session:
        campaign = await session.get(Campaign, campaign_id)
    assert campaign is not None
    report = sender.PumpReport()
    content = Content.model_validate(campaign.content)
    try:
        stop = await sender._send_and_record(
            deps,
            campaign,
            CampaignKind.live,
            content,
            send_timing(db.settings, campaign, content.ttl_seconds),
            rows,
            lease,
            now,
            report,
        )
    finally:
        await deps.control.watch.aclose()
    new_batch = batch_size_for_rate(paced(100), max_batch=db.settings.chunk_size)
    assert stop is None
    assert await sandbox_count(db, campaign_id) == new_batch
    statuses = Counter(r.status for r in await deliveries(db, campaign_id))
    assert statuses == {"sent": new_batch, "queued": 600 - new_batch}
    # The rows that went back were not attempts.
    assert {r.attempts for r in await deliveries(db, campaign_id) if r.status == "queued"} == {0}


async def test_a_lost_rate_is_restored_from_the_database_not_from_a_stale_copy(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    """The send job loaded its campaign while it ran; the campaign was killed since, and Redis
    lost its data before the kill reached it. Nothing may write an open grant back."""
    campaign_id, _ = await _released(client, make_key, db, devices=20, rate=100)
    deps = await sender_deps(db)
    killer = bearer(await make_key(Scope.kill))
    killed = await client.post(
        f"/v1/campaigns/{campaign_id}/kill", json={"reason": "wrong copy"}, headers=killer
    )
    assert killed.status_code == 200
    await db.redis.flushdb()
    await Control(db.redis).gate.set_global(True, 1)
    with pytest.raises(sender._Stop, match="not running"):
        await sender._batch_size(deps, campaign_id)
    # The admission finds the campaign's grant gone (closed) before it looks at the rate.
    with pytest.raises(sender._Stop, match=r"gate closed \(campaign_closed\)"):
        await sender._admit(deps, campaign_id, [throttle_scope(campaign_id)], 5, lead=1.0)
    assert await db.redis.get(f"wavecast:throttle:{throttle_scope(campaign_id)}:rate") is None
    with pytest.raises(GateClosed):
        await Control(db.redis).gate.acquire(campaign_id, 1)


async def test_devices_that_left_the_audience_after_the_release_are_not_sent(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    """A consent tag removed after the wave was released: the send loop re-applies the
    campaign's rules in its claim, and those devices are cancelled, never sent."""
    ids = await add_devices(db, 600)
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Device).where(col(Device.id).in_(ids)).values(tags=["consent"])
        )
    headers = await _operator(make_key)
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(
            audience={"rules": {"field": "tags", "op": "contains", "value": "consent"}},
            rollout={"waves": [{"percent": 100}]},
            throttle={"per_second": 10_000},
        ),
    )
    deps = await sender_deps(db)
    await engine.tick(db.sessionmaker, deps.control, db.settings)
    assert len(await deliveries(db, campaign_id)) == 600
    withdrawn = set(ids[:300])
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Device).where(col(Device.id).in_(list(withdrawn))).values(tags=[])
        )
    try:
        await sender.pump(deps, campaign_id, budget_seconds=10)
    finally:
        await deps.control.watch.aclose()
    rows = await deliveries(db, campaign_id)
    sent = {r.device_id for r in rows if r.status == "sent"}
    assert not sent & withdrawn, "a device that withdrew its consent was sent"
    assert len(sent) == 300
    left = [r for r in rows if r.device_id in withdrawn]
    assert {(r.status, r.error_code) for r in left} == {("cancelled", "left_audience")}
    assert await sandbox_count(db, campaign_id) == 300


async def test_a_retry_recorded_after_a_kill_is_cancelled_not_left_waiting(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    campaign_id, _ = await _released(client, make_key, db, devices=5, rate=100)
    lease, now = uuid.uuid4(), utcnow()
    async with unit_of_work(db.sessionmaker) as session:
        rows = await ledger.claim(
            session,
            campaign_id=campaign_id,
            limit=5,
            lease_token=lease,
            lease_until=now + timedelta(seconds=60),
            now=now,
        )
    killer = bearer(await make_key(Scope.kill))
    killed = await client.post(
        f"/v1/campaigns/{campaign_id}/kill", json={"reason": "wrong copy"}, headers=killer
    )
    assert killed.status_code == 200
    # The requests were on the wire at the kill; the provider answered "try again".
    async with unit_of_work(db.sessionmaker) as session:
        await ledger.record(
            session,
            lease_token=lease,
            outcomes=[
                ledger.Outcome(r.delivery_id, DeliveryStatus.retrying, next_attempt_at=now)
                for r in rows
            ],
            now=now,
        )
    assert {r.status for r in await deliveries(db, campaign_id)} == {"cancelled"}


async def test_rows_whose_quiet_hours_begin_while_they_wait_are_held_not_sent(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    """Quiet hours are asked again right before the requests start, not only at the claim:
    a batch that waited for its throttle tokens into a device's quiet hours goes back to the
    queue, due at the window's end, and nothing reaches the provider."""
    campaign_id, _ = await _released(client, make_key, db, devices=20, rate=10_000)
    deps = await sender_deps(db)
    lease, now = uuid.uuid4(), utcnow()
    async with unit_of_work(db.sessionmaker) as session:
        rows = await ledger.claim(
            session,
            campaign_id=campaign_id,
            limit=20,
            lease_token=lease,
            lease_until=now + timedelta(seconds=60),
            now=now,
        )
        campaign = await session.get(Campaign, campaign_id)
    assert campaign is not None and len(rows) == 20
    content = Content.model_validate(campaign.content)
    # Quiet hours that began a minute ago (UTC devices) and end in an hour.
    start = (now - timedelta(minutes=1)).time().replace(second=0, microsecond=0)
    end = (now + timedelta(hours=1)).time().replace(second=0, microsecond=0)
    timing = dataclasses.replace(
        send_timing(db.settings, campaign, content.ttl_seconds),
        quiet=QuietHours(start=start, end=end),
    )
    report = sender.PumpReport()
    try:
        outcomes, stop = await sender._send(deps, campaign, content, timing, rows, report)
        await sender._record(deps, lease, outcomes, report)
    finally:
        await deps.control.watch.aclose()
    assert stop is None
    assert await sandbox_count(db, campaign_id) == 0
    assert all(o.give_back and o.deferred for o in outcomes) and len(outcomes) == 20
    rows_after = await deliveries(db, campaign_id)
    assert {(r.status, r.attempts) for r in rows_after} == {("queued", 0)}
    assert {r.next_attempt_at for r in rows_after} == {
        datetime.combine(now.date(), end, tzinfo=UTC)
        + (timedelta(days=1) if end < start else timedelta(0))
    }


async def test_a_stopping_worker_ends_its_send_loop_after_the_batch_in_flight(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    # 200 sends a second: a batch of 8 every 40 ms, so 1,000 rows would take 5 s.
    campaign_id, _ = await _released(client, make_key, db, devices=1_000, rate=200)
    deps = await sender_deps(db)
    try:
        deps.stopping.set()
        told = await sender.pump(deps, campaign_id, budget_seconds=10)
        assert told.stopped_because == sender.WORKER_STOPPING
        assert told.batches == 0 and await sandbox_count(db, campaign_id) == 0

        deps.stopping.clear()
        loop = asyncio.create_task(sender.pump(deps, campaign_id, budget_seconds=10))
        await asyncio.sleep(0.5)
        deps.stopping.set()
        started = time.monotonic()
        report = await loop
        assert time.monotonic() - started < 1.0
        assert report.stopped_because == sender.WORKER_STOPPING
        sent = await sandbox_count(db, campaign_id)
        assert 0 < sent < 1_000 and report.sent == sent
        # Nothing left leased: every claimed row was recorded, the rest wait for a sender.
        statuses = Counter(r.status for r in await deliveries(db, campaign_id))
        assert statuses == {DeliveryStatus.sent: sent, DeliveryStatus.queued: 1_000 - sent}
    finally:
        await deps.control.watch.aclose()
