"""Migration 0018 on PostgreSQL with a campaign sending: down to 0017 (one plain ledger) and
up again while a sender of the previous release claims and records rows. The old table
becomes month 0's partition without its indexes being built again, refs handed out before
still land, the campaign completes with every row sent exactly once, and a campaign created
afterwards gets its month's partition.

PostgreSQL only: SQLite keeps one table (the round trip is in tests/db/test_migrations.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text

from alembic import command
from app.db import migrate
from app.db.types import utcnow
from app.delivery import partitions
from app.runtime import Runtime
from tests.conftest import KeyMaker
from tests.delivery import sending_through_migrations as old_sender
from tests.support import (
    campaign_body,
    create_and_start,
    deliveries,
    run_engine,
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
    campaign = await old_sender.half_sent(client, make_key, db, DEVICES)
    campaign_id = campaign.campaign_id
    url = db.settings.effective_database_url
    try:
        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), "0017")
        await db.engine.dispose()
        kind = "SELECT relkind::text FROM pg_class WHERE relname = 'delivery'"
        assert await _scalar(db, kind) == "r"
        # The index the claim reads, as the plain ledger has it: the same one afterwards.
        index = await _scalar(db, "SELECT 'ix_delivery_claimable_due'::regclass::oid")
    finally:
        # Up again while a sender of the previous release claims and records the wave's rows.
        sent_during = await old_sender.migrate_while_sending(db, campaign_id)
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

    # Refs from before land; the campaign completes in month 0's partition.
    rows = await old_sender.finish(
        client, make_key, db, campaign, devices=DEVICES, sent_during=sent_during
    )
    assert {r.ledger_month for r in rows} == {0}

    # A campaign created now lives in its month's partition.
    fresh = await create_and_start(client, campaign.headers, campaign_body())
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
