"""How the tick re-derives Redis grants from PostgreSQL (engine.sync_grants): every tick for
the campaigns in flight and recent changes, once a minute and after a Redis data loss for
everything that finished in the last day."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.auth.principal import SYSTEM
from app.campaigns import service as campaigns
from app.campaigns.models import Campaign
from app.campaigns.schemas import CampaignCreate
from app.campaigns.state import CampaignAction
from app.control.gate import GateClosed
from app.control.plane import FULL_SYNC_KEY, Control
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.rollout import engine
from app.runtime import Runtime
from tests.support import add_devices, campaign_body


async def _started(db: Runtime) -> Campaign:
    async with unit_of_work(db.sessionmaker) as session:
        campaign = await campaigns.create(
            session, db.settings, SYSTEM, CampaignCreate.model_validate(campaign_body())
        )
        return await campaigns.start(
            session, db.settings, SYSTEM, campaign.id, override_reason=None, reason="test"
        )


async def _killed_long_ago(db: Runtime) -> Campaign:
    """A campaign killed an hour ago whose kill never reached Redis: its grant there is
    still open, one version behind the database."""
    campaign = await _started(db)
    control = Control(db.redis)
    await control.publish_campaign(campaign)
    async with unit_of_work(db.sessionmaker) as session:
        killed = await campaigns.stop(
            session, SYSTEM, campaign.id, CampaignAction.kill, reason="test"
        )
        hour_ago = utcnow() - timedelta(hours=1)
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign.id)  # type: ignore[arg-type]
            .values(updated_at=hour_ago, finished_at=hour_ago)
        )
    return killed


async def _is_open(db: Runtime, campaign_id: uuid.UUID) -> bool:
    gate = Control(db.redis).gate
    try:
        permit = await gate.acquire(campaign_id, 5)
    except GateClosed:
        return False
    await gate.release(campaign_id, permit)
    return True


@pytest.fixture
async def devices(db: Runtime) -> None:
    await add_devices(db, 5)


@pytest.mark.usefixtures("devices")
async def test_a_stale_grant_of_an_old_campaign_closes_at_the_next_full_sync(db: Runtime) -> None:
    killed = await _killed_long_ago(db)
    control = Control(db.redis)
    await control.gate.set_global(True, 1)
    assert await _is_open(db, killed.id)
    # A full sync ran moments ago (another worker): an ordinary tick leaves old campaigns be.
    await db.redis.set(FULL_SYNC_KEY, "1", ex=60)
    await engine.sync_grants(db.sessionmaker, control, utcnow())
    assert await _is_open(db, killed.id)
    # Once the marker has expired, the next tick re-derives every recent campaign.
    await db.redis.delete(FULL_SYNC_KEY)
    await engine.sync_grants(db.sessionmaker, control, utcnow())
    assert not await _is_open(db, killed.id)
    assert await db.redis.ttl(FULL_SYNC_KEY) > 0


@pytest.mark.usefixtures("devices")
async def test_running_campaigns_and_recent_changes_are_synced_on_every_tick(
    db: Runtime,
) -> None:
    control = Control(db.redis)
    running = await _started(db)
    stopped = await _started(db)
    await control.publish_campaign(stopped)
    async with unit_of_work(db.sessionmaker) as session:
        await campaigns.stop(session, SYSTEM, stopped.id, CampaignAction.cancel, reason="test")
    await db.redis.set(FULL_SYNC_KEY, "1", ex=60)
    await engine.sync_grants(db.sessionmaker, control, utcnow())
    # The running campaign's grant was never written: the tick wrote it.
    assert await _is_open(db, running.id)
    # The cancel (two minutes old at most) never reached Redis: the tick closed its grant.
    assert not await _is_open(db, stopped.id)


@pytest.mark.usefixtures("devices")
async def test_after_redis_loses_its_data_everything_recent_is_rewritten(db: Runtime) -> None:
    killed = await _killed_long_ago(db)
    control = Control(db.redis)
    running = await _started(db)
    await engine.sync_grants(db.sessionmaker, control, utcnow())
    await db.redis.flushdb()
    # A missing grant is closed, so nothing sends until the grants are rewritten...
    assert not await _is_open(db, running.id)
    await engine.sync_grants(db.sessionmaker, control, utcnow())
    # ...and the first tick after the loss rewrites them all, the old kill included.
    assert await _is_open(db, running.id)
    assert not await _is_open(db, killed.id)
    assert await db.redis.exists(FULL_SYNC_KEY)
