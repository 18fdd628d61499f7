"""Migration 0014 on PostgreSQL with a campaign running: down to 0013 and back up while rows
are claimed and recorded, the campaign then completes with every row sent exactly once, and
engagement events for refs handed out before the migration still land. The sender during the
migration is one of the previous release (tests/delivery/sending_through_migrations.py): the
code of today needs the columns of later migrations.

PostgreSQL only: the index is built CONCURRENTLY there, while the ledger takes writes; SQLite
has one writer and builds it in place (the round trip is in tests/db/test_migrations.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text

from alembic import command
from app.db import migrate
from app.runtime import Runtime
from tests.conftest import KeyMaker
from tests.delivery import sending_through_migrations as old_sender

DEVICES = 400


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
    # The first wave is released, and some of it sent; the second waits for its hold.
    campaign = await old_sender.half_sent(client, make_key, db, DEVICES)
    url = db.settings.effective_database_url
    try:
        await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), "0013")
        await db.engine.dispose()
        assert "ix_delivery_claimable" in await _indexes(db)
        assert "ix_delivery_claimable_due" not in await _indexes(db)
    finally:
        # Up again while a sender claims and records the first wave's rows.
        sent_during = await old_sender.migrate_while_sending(db, campaign.campaign_id)
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

    # Refs from before land; the campaign completes, every device sent once.
    await old_sender.finish(
        client, make_key, db, campaign, devices=DEVICES, sent_during=sent_during
    )
