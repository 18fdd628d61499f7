"""Migration 0014 on PostgreSQL with a campaign running: down to 0013 and back up while rows
are claimed and recorded, the campaign then completes with every row sent exactly once, and
engagement events for refs handed out before the migration still land. The sender during the
migration is one of the previous release (tests/delivery/sending_through_migrations.py): the
code of today needs the columns of later migrations.

PostgreSQL only: the index is built CONCURRENTLY there, while the ledger takes writes; SQLite
has one writer and builds it in place (the round trip is in tests/db/test_migrations.py)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from sqlalchemy import func, select, text

from alembic import command
from app.auth.models import Scope
from app.control.plane import Control
from app.db import migrate
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery.models import Delivery, DeliveryStatus
from app.rollout import engine
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.delivery import sending_through_migrations as old_sender
from tests.support import (
    add_devices,
    campaign_body,
    create_and_start,
    deliveries,
    run_engine,
    sandbox_count,
)

DEVICES = 400
_delivery = Delivery.__table__  # type: ignore[attr-defined]


async def _indexes(db: Runtime) -> set[str]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT indexname FROM pg_indexes WHERE tablename = 'delivery'")
        )
        return {r[0] for r in rows}


async def test_0014_moves_a_running_campaigns_ledger_without_stopping_it(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("PostgreSQL only: the concurrent index build and its locks")
    await add_devices(db, DEVICES)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 50, "hold_seconds": 3600}, {"percent": 100}]}),
    )
    # The first wave is released, and some of it sent; the second waits for its hold.
    control = Control(db.redis)
    try:
        await engine.tick(db.sessionmaker, control, db.settings)
    finally:
        await control.watch.aclose()
    assert len(await deliveries(db, campaign_id)) == DEVICES // 2
    sent_before = await old_sender.send(db, campaign_id, 30)
    first = [r for r in await deliveries(db, campaign_id) if r.status == "sent"]
    assert sent_before == len(first) == 30
    url = db.settings.effective_database_url
    sent_during = 0
    try:
        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), "0013")
        await db.engine.dispose()
        assert "ix_delivery_claimable" in await _indexes(db)
        assert "ix_delivery_claimable_due" not in await _indexes(db)
        # Up again while a sender claims and records the first wave's rows.
        stop = threading.Event()
        sending = asyncio.create_task(old_sender.send_until(db, campaign_id, stop))
        try:
            await asyncio.to_thread(migrate.upgrade, url)
        finally:
            stop.set()
            sent_during = await sending
    finally:
        # Whatever happened, the rest of the suite finds the schema at head.
        await asyncio.to_thread(migrate.upgrade, url)
        await db.engine.dispose()
    indexes = await _indexes(db)
    assert "ix_delivery_claimable_due" in indexes and "ix_delivery_claimable" not in indexes
    async with db.engine.connect() as conn:
        valid = await conn.execute(
            text(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                "'ix_delivery_claimable_due'::regclass"
            )
        )
        assert valid.scalar_one() is True
    assert sent_during > 0

    # Refs handed out before the migration: their engagement lands.
    writer = bearer(await make_key(Scope.events_write))
    events = [{"ref": r.id, "type": "received", "at": utcnow().isoformat()} for r in first[:20]]
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.json() == {"accepted": 20, "duplicates": 0, "rejected": []}

    # The campaign completes (the hold skipped: the same engine, promoted by hand).
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            text("UPDATE campaign_wave SET hold_seconds = 0 WHERE campaign_id = :c"),
            {"c": campaign_id},
        )
    await run_engine(db, campaign_id)
    rows = await deliveries(db, campaign_id)
    assert len(rows) == DEVICES
    assert len({r.device_id for r in rows}) == DEVICES
    assert {(r.status, r.attempts) for r in rows} == {(DeliveryStatus.sent.value, 1)}
    assert await sandbox_count(db, campaign_id) + sent_before + sent_during == DEVICES
    async with db.sessionmaker() as session:
        statuses = await session.execute(
            select(_delivery.c.status, func.count())
            .where(_delivery.c.campaign_id == campaign_id)
            .group_by(_delivery.c.status)
        )
        assert dict(statuses.tuples().all()) == {"sent": DEVICES}
