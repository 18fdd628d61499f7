"""A decision about a campaign is a read-modify-write, and must be atomic across processes.

On PostgreSQL `SELECT ... FOR UPDATE` makes the second decider wait for the first. SQLite
ignores FOR UPDATE, and its Python drivers begin a transaction only at the first write, so
the read ran outside any transaction: two processes could both read `draft` and both act on
it. Here the second process is a second engine (its own connections, as another process has);
both tests run on either database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns import service as campaigns
from app.campaigns.state import CampaignAction
from app.db.session import create_engine, create_sessionmaker, unit_of_work
from app.errors import Problem
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body


@pytest.fixture
async def other_process(db: Runtime) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(db.settings.effective_database_url)
    yield engine
    await engine.dispose()


async def draft_campaign(client: httpx.AsyncClient, make_key: KeyMaker) -> uuid.UUID:
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"
    return uuid.UUID(created.json()["id"])


async def test_a_cancel_racing_a_kill_waits_and_sees_the_kill(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker, other_process: AsyncEngine
) -> None:
    """Both read `draft`, both may stop it; without a shared lock the cancel, committed last,
    turned the terminal `killed` into `cancelled` (two terminal transitions audited)."""
    campaign_id = await draft_campaign(client, make_key)
    killer_decided = asyncio.Event()

    async def kill() -> None:
        async with unit_of_work(db.sessionmaker) as session:
            await campaigns.stop(session, SYSTEM, campaign_id, CampaignAction.kill, reason="k")
            killer_decided.set()
            await asyncio.sleep(0.5)  # the other process decides while the kill is uncommitted

    async def cancel() -> str:
        await killer_decided.wait()
        try:
            async with unit_of_work(create_sessionmaker(other_process)) as session:
                await campaigns.stop(
                    session, SYSTEM, campaign_id, CampaignAction.cancel, reason="c"
                )
        except Problem as refused:
            return f"refused {refused.status}"
        return "cancelled"

    _, outcome = await asyncio.gather(kill(), cancel())

    async with db.sessionmaker() as session:
        status = (await campaigns.get(session, campaign_id)).status
        decisions = (
            await session.exec(
                select(AuditEvent.action)
                .where(AuditEvent.subject_id == str(campaign_id))
                .order_by(col(AuditEvent.sequence))
            )
        ).all()
    assert (outcome, status) == ("refused 409", "killed")
    assert [a for a in decisions if a != "campaign.created"] == ["campaign.kill"]


async def test_a_plain_read_does_not_wait_for_a_deciding_transaction(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker, other_process: AsyncEngine
) -> None:
    """Only units of work take SQLite's write lock up front; a bare read (readiness probe,
    audit walk) still reads the last committed state beside them, as WAL allows."""
    campaign_id = await draft_campaign(client, make_key)
    holding = asyncio.Event()
    read_done = asyncio.Event()

    async def decide() -> None:
        async with unit_of_work(db.sessionmaker) as session:
            await campaigns.get(session, campaign_id, lock=True)
            holding.set()
            await asyncio.wait_for(read_done.wait(), timeout=10)

    async def read() -> int:
        await holding.wait()
        try:
            async with other_process.connect() as conn:
                return int((await conn.execute(text("SELECT count(*) FROM campaign"))).scalar_one())
        finally:
            read_done.set()

    _, count = await asyncio.wait_for(asyncio.gather(decide(), read()), timeout=8)
    assert count == 1
