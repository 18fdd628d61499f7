"""Large waves are released a chunk per tick; the membership is the same as one statement's,
and a wave does not finish before the ledger holds its target."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import text

from app.audiences.service import audience_filter
from app.auth.models import Scope
from app.campaigns import service as campaigns_service
from app.campaigns.state import CampaignStatus
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger
from app.rollout import engine
from app.rollout.planner import reference_waves
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    deliveries,
    run_engine,
    sender_deps,
)

WAVES = [Decimal(10), Decimal(100)]


async def _start(client: httpx.AsyncClient, make_key: KeyMaker) -> uuid.UUID:
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    body = campaign_body(rollout={"waves": [{"percent": str(p)} for p in WAVES]})
    return await create_and_start(client, headers, body)


async def test_chunks_release_exactly_the_reference_waves(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "RELEASE_CHUNK_ROWS", 7)
    monkeypatch.setattr(engine, "RELEASE_MORE_ROWS", 11)
    ids = await add_devices(db, 230)
    campaign_id = await _start(client, make_key)
    await run_engine(db, campaign_id)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed
    rows = await deliveries(db, campaign_id)
    expected = reference_waves(ids, campaign_id, WAVES)
    for wave, members in enumerate(expected):
        assert {r.device_id for r in rows if r.wave <= wave} == set(members)
    assert {r.status for r in rows} == {"sent"}


async def test_the_rest_of_a_wave_follows_a_chunk_per_tick_before_it_can_finish(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "RELEASE_CHUNK_ROWS", 5)
    monkeypatch.setattr(engine, "RELEASE_MORE_ROWS", 3)
    ids = await add_devices(db, 120)
    campaign_id = await _start(client, make_key)
    deps = await sender_deps(db)
    ticks = []
    for _ in range(4):
        report = await engine.tick(db.sessionmaker, deps.control, db.settings)
        ticks.append({wave: count for _, wave, count in report.released})
    # ceil(10 % of 120) = 12 rows in wave 0: 5 at release, then 3, 3 and the last 1, even
    # though nothing was sent in between (no wave finishes with rows still to release).
    assert ticks == [{0: 5}, {0: 3}, {0: 3}, {0: 1}]
    await run_engine(db, campaign_id)
    rows = await deliveries(db, campaign_id)
    expected = reference_waves(ids, campaign_id, WAVES)
    for wave, members in enumerate(expected):
        assert {r.device_id for r in rows if r.wave <= wave} == set(members)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed


async def test_members_keep_their_first_wave_and_are_added_once(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    ids = await add_devices(db, 30)
    campaign_id = await _start(client, make_key)
    async with unit_of_work(db.sessionmaker) as session:
        campaign = await campaigns_service.get(session, campaign_id)
        audience = audience_filter(campaign.audience_rules, now=utcnow())
        first = await ledger.next_members(
            session,
            campaign_id=campaign_id,
            rotation=campaign.rotation,
            audience=audience,
            limit=10,
        )
        # The campaign's order, from the start: what the reference says comes first.
        expected = reference_waves(ids, campaign_id, [Decimal(100)])[0]
        assert first == expected[:10]
        added = await ledger.add_members(
            session, campaign_id=campaign_id, wave=0, device_ids=first, now=utcnow()
        )
        assert added == 10
        # Offered again with new ones, in a later wave: only the new ones are added.
        after = await ledger.next_members(
            session,
            campaign_id=campaign_id,
            rotation=campaign.rotation,
            audience=audience,
            limit=5,
        )
        assert after == expected[10:15]
        added = await ledger.add_members(
            session, campaign_id=campaign_id, wave=1, device_ids=first[:3] + after, now=utcnow()
        )
        assert added == 5
    rows = {r.device_id: r.wave for r in await deliveries(db, campaign_id)}
    assert rows == {**dict.fromkeys(first, 0), **dict.fromkeys(after, 1)}


async def test_the_release_plans_its_anti_join_in_memory_and_never_as_a_nested_loop(
    db: Runtime, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("planner settings are PostgreSQL's")
    await add_devices(db, 3)
    async with unit_of_work(db.sessionmaker) as session:
        await ledger.next_members(
            session,
            campaign_id=uuid.uuid4(),
            rotation=0,
            audience=audience_filter({"everyone": True}, now=utcnow()),
            limit=1,
        )
        assert (await session.execute(text("SHOW enable_nestloop"))).scalar_one() == "off"
        assert (await session.execute(text("SHOW work_mem"))).scalar_one() == "128MB"
    # SET LOCAL: the pooled connection goes back to the server's defaults.
    async with unit_of_work(db.sessionmaker) as session:
        assert (await session.execute(text("SHOW enable_nestloop"))).scalar_one() == "on"
