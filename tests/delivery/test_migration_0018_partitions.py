"""Migration 0018 on PostgreSQL with a campaign sending: down to 0017 (one plain ledger) and
up again while a sender of the previous release claims and records rows. The old table
becomes month 0's partition without its indexes being built again, refs handed out before
still land, the campaign completes with every row sent exactly once, and a campaign created
afterwards gets its month's partition.

PostgreSQL only: SQLite keeps one table (the round trip is in tests/db/test_migrations.py)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from sqlalchemy import text

from alembic import command
from app.auth.models import Scope
from app.control.plane import Control
from app.db import migrate
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import partitions
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


async def _scalar(db: Runtime, sql: str) -> object:
    async with db.engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one_or_none()


async def test_0018_partitions_a_running_campaigns_ledger_without_stopping_it(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("PostgreSQL only: the partitions, the concurrent builds and the swap")
    await add_devices(db, DEVICES)
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
    assert len(await deliveries(db, campaign_id)) == DEVICES // 2
    sent_before = await old_sender.send(db, campaign_id, 30)
    first = [r for r in await deliveries(db, campaign_id) if r.status == "sent"]
    assert sent_before == len(first) == 30
    url = db.settings.effective_database_url
    sent_during = 0
    try:
        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), "0017")
        await db.engine.dispose()
        kind = "SELECT relkind::text FROM pg_class WHERE relname = 'delivery'"
        assert await _scalar(db, kind) == "r"
        # The index the claim reads, as the plain ledger has it: the same one afterwards.
        index = await _scalar(db, "SELECT 'ix_delivery_claimable_due'::regclass::oid")
        # Up again while a sender of the previous release claims and records the wave's rows.
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
    assert sent_during > 0
    assert await _scalar(db, "SELECT relkind::text FROM pg_class WHERE relname = 'delivery'") == "p"
    bound = await _scalar(
        db, "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'delivery_legacy'"
    )
    assert bound == "FOR VALUES IN (0)"
    # Not built again under the swap's lock: the legacy partition carries the very index.
    assert await _scalar(db, "SELECT 'delivery_legacy_claimable_due'::regclass::oid") == index
    invalid = await _scalar(db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid")
    assert invalid == 0
    # Every row is month 0's now, whatever month its id names (it was made at head before).
    assert {r.ledger_month for r in await deliveries(db, campaign_id)} == {0}

    # Refs handed out before the migration: their engagement lands.
    writer = bearer(await make_key(Scope.events_write))
    events = [{"ref": r.id, "type": "received", "at": utcnow().isoformat()} for r in first[:20]]
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.json() == {"accepted": 20, "duplicates": 0, "rejected": []}

    # The campaign completes in month 0's partition (the hold skipped by hand).
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            text("UPDATE campaign_wave SET hold_seconds = 0 WHERE campaign_id = :c"),
            {"c": campaign_id},
        )
    await run_engine(db, campaign_id)
    rows = await deliveries(db, campaign_id)
    assert len(rows) == DEVICES
    assert len({r.device_id for r in rows}) == DEVICES
    assert {(r.status, r.attempts, r.ledger_month) for r in rows} == {("sent", 1, 0)}
    assert await sandbox_count(db, campaign_id) + sent_before + sent_during == DEVICES

    # A campaign created now lives in its month's partition.
    fresh = await create_and_start(client, headers, campaign_body())
    await run_engine(db, fresh)
    month = partitions.month_of(utcnow())
    async with db.engine.connect() as conn:
        where = await conn.execute(
            text(
                "SELECT DISTINCT tableoid::regclass::text, id >> 40 FROM delivery "
                "WHERE campaign_id = :c"
            ),
            {"c": fresh},
        )
        assert where.all() == [(f"delivery_m{month}", month)]
