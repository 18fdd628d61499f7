"""A sender of the previous release, for tests that migrate with a campaign sending: the
claim and record statements any schema version since 0005 takes (the ledger's id, campaign,
status and lease columns), so it runs at the old revision, through the migration and at the
new one, as workers of the version before go on running while a deployment migrates."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy import text

from app.auth.models import Scope
from app.control.plane import Control
from app.db import migrate
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery.models import Delivery
from app.rollout import engine
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    create_and_start,
    deliveries,
    run_engine,
    sandbox_count,
)

_CLAIM = text(
    """
    UPDATE delivery SET status = 'sending', lease_token = :lease,
        lease_until = now() + interval '1 minute', attempts = attempts + 1, updated_at = now()
    WHERE id IN (
        SELECT id FROM delivery
        WHERE campaign_id = :campaign AND status = 'queued'
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)
_RECORD = text(
    """
    UPDATE delivery SET status = 'sent', provider = 'sandbox', sent_at = now(),
        lease_token = NULL, lease_until = NULL, updated_at = now()
    WHERE id = ANY(:ids) AND lease_token = :lease AND status = 'sending'
    """
)


async def send(db: Runtime, campaign_id: uuid.UUID, limit: int) -> int:
    """Claim and record up to `limit` queued rows; returns rows sent."""
    lease = uuid.uuid4()
    async with unit_of_work(db.sessionmaker) as session:
        claimed = [
            r[0]
            for r in await session.execute(
                _CLAIM, {"lease": lease, "campaign": campaign_id, "limit": limit}
            )
        ]
    if not claimed:
        return 0
    async with unit_of_work(db.sessionmaker) as session:
        result = await session.execute(_RECORD, {"ids": claimed, "lease": lease})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def send_until(db: Runtime, campaign_id: uuid.UUID, stop: threading.Event) -> int:
    """Five rows at a time until told to stop; returns rows sent."""
    sent = 0
    while not stop.is_set():
        sent += await send(db, campaign_id, 5)
        await asyncio.sleep(0.005)
    return sent


@dataclass
class HalfSent:
    """A running campaign whose first wave (half the devices) is in the ledger and partly
    sent, its second held back for an hour."""

    campaign_id: uuid.UUID
    headers: dict[str, str]
    # The rows sent before the migration: their refs are on phones.
    first: list[Delivery]


async def half_sent(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, devices: int
) -> HalfSent:
    await add_devices(db, devices)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 50, "hold_seconds": 3600}, {"percent": 100}]}),
    )
    control = Control(db.redis)
    try:
        await engine.tick(db.sessionmaker, control, db.settings)
    finally:
        await control.watch.aclose()
    assert len(await deliveries(db, campaign_id)) == devices // 2
    assert await send(db, campaign_id, 30) == 30
    first = [r for r in await deliveries(db, campaign_id) if r.status == "sent"]
    assert len(first) == 30
    return HalfSent(campaign_id, headers, first)


async def migrate_while_sending(db: Runtime, campaign_id: uuid.UUID) -> int:
    """Up to the head while the previous release's sender claims and records; rows sent
    meanwhile. The schema is at the head afterwards whatever happened."""
    url = db.settings.effective_database_url
    try:
        stop = threading.Event()
        sending = asyncio.create_task(send_until(db, campaign_id, stop))
        try:
            await asyncio.to_thread(migrate.upgrade, url)
        finally:
            stop.set()
            sent = await sending
    finally:
        await asyncio.to_thread(migrate.upgrade, url)
        await db.engine.dispose()
    return sent


async def finish(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    campaign: HalfSent,
    *,
    devices: int,
    sent_during: int,
) -> list[Delivery]:
    """After the migration: refs handed out before it land, and the campaign completes (its
    hold skipped by hand) with every device sent exactly once. The ledger's rows."""
    writer = bearer(await make_key(Scope.events_write))
    events = [
        {"ref": r.id, "type": "received", "at": utcnow().isoformat()} for r in campaign.first[:20]
    ]
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            text("UPDATE campaign_wave SET hold_seconds = 0 WHERE campaign_id = :c"),
            {"c": campaign.campaign_id},
        )
    await run_engine(db, campaign.campaign_id)
    rows = await deliveries(db, campaign.campaign_id)
    assert len(rows) == devices
    assert len({r.device_id for r in rows}) == devices
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    sandbox = await sandbox_count(db, campaign.campaign_id)
    assert sandbox + len(campaign.first) + sent_during == devices
    return rows
