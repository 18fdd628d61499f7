"""Guard rule 4 (staging) in the engine, for waves that reached the database already `sending`.

A campaign can reach the database by another road than the API (a script, a restore, a bad
migration) with its wave already `sending`. In production the engine must not release a
single device of an unstaged live campaign however far its waves got: it pauses the campaign
with the guard's reason, before any release chunk.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from app.campaigns.models import Campaign, CampaignKind, CampaignWave, WaveStatus
from app.campaigns.state import CampaignStatus
from app.control.plane import Control
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.rollout import engine
from app.rollout.bucketing import campaign_rotation
from app.runtime import Runtime
from app.settings import Environment, Settings
from tests.support import LIVE_CONTENT, add_devices, campaign_status, deliveries


def production(runtime: Runtime) -> Settings:
    """The engine as a production deployment runs it (stores are the test ones)."""
    return runtime.settings.model_copy(update={"env": Environment.production})


async def insert_sending(
    runtime: Runtime, waves: list[tuple[int, int]], *, sending: int, audience: int
) -> uuid.UUID:
    """A running live campaign written straight into the database, wave `sending` already
    released (`sending`, its target set), every earlier wave finished long ago."""
    campaign_id = uuid.uuid4()
    now = utcnow()
    long_ago = now - timedelta(days=1)
    async with unit_of_work(runtime.sessionmaker) as session:
        session.add(
            Campaign(
                id=campaign_id,
                name="inserted by hand",
                kind=CampaignKind.live,
                status=CampaignStatus.running,
                content=dict(LIVE_CONTENT),
                audience_rules={"everyone": True},
                throttle_per_second=100_000,
                failure_threshold_percent=Decimal(5),
                rotation=campaign_rotation(campaign_id),
                current_wave=sending,
                created_by="someone:script",
                started_at=long_ago,
            )
        )
        await session.flush()
        for index, (percent, hold) in enumerate(waves):
            released = index <= sending
            session.add(
                CampaignWave(
                    campaign_id=campaign_id,
                    index=index,
                    percent=Decimal(percent),
                    hold_seconds=hold,
                    status=(
                        WaveStatus.sending
                        if index == sending
                        else WaveStatus.finished
                        if released
                        else WaveStatus.pending
                    ),
                    audience_size=audience if released else None,
                    target_count=-(-percent * audience // 100) if released else None,
                    released_at=long_ago if released else None,
                    finished_at=long_ago if index < sending else None,
                )
            )
    return campaign_id


async def test_an_unstaged_wave_already_sending_releases_nobody_in_production(
    db: Runtime,
) -> None:
    await add_devices(db, 300)
    # One wave of 100 %: refused by the API in production, here written directly.
    campaign_id = await insert_sending(db, [(100, 0)], sending=0, audience=300)
    report = await engine.tick(db.sessionmaker, Control(db.redis), production(db))
    assert await deliveries(db, campaign_id) == []
    assert report.released == []
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused
    [(paused, reason)] = report.paused
    assert paused == campaign_id
    assert reason.startswith("environment guard: ")
    assert "at least two waves" in reason, reason
    # Later ticks do not release anything either: the campaign stays paused.
    await engine.tick(db.sessionmaker, Control(db.redis), production(db))
    assert await deliveries(db, campaign_id) == []


async def test_a_wave_too_large_for_staging_is_refused_before_its_next_chunk(
    db: Runtime,
) -> None:
    """Two waves, but the first one is 50 % with no hold: guard rule 4 fails on both counts."""
    await add_devices(db, 200)
    campaign_id = await insert_sending(db, [(50, 0), (100, 0)], sending=0, audience=200)
    report = await engine.tick(db.sessionmaker, Control(db.redis), production(db))
    assert await deliveries(db, campaign_id) == []
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused
    [(_, reason)] = report.paused
    assert reason.startswith("environment guard: ")
    assert "first wave may reach at most" in reason, reason


async def test_a_staged_wave_already_sending_is_released_in_production(db: Runtime) -> None:
    """The guard refuses what is unstaged, nothing else: a staged campaign in the same
    state gets the rest of its wave."""
    await add_devices(db, 200)
    settings = production(db)
    first_cap = int(settings.max_first_wave_percent)
    waves = [(first_cap, settings.min_hold_seconds), (100, settings.min_hold_seconds)]
    campaign_id = await insert_sending(db, waves, sending=1, audience=200)
    report = await engine.tick(db.sessionmaker, Control(db.redis), settings)
    assert report.paused == []
    assert await campaign_status(db, campaign_id) is CampaignStatus.running
    rows = await deliveries(db, campaign_id)
    assert len(rows) == 200
    assert {r.wave for r in rows} == {1}


async def test_outside_production_the_engine_releases_an_unstaged_wave(db: Runtime) -> None:
    await add_devices(db, 50)
    campaign_id = await insert_sending(db, [(100, 0)], sending=0, audience=50)
    await engine.tick(db.sessionmaker, Control(db.redis), db.settings)
    assert len(await deliveries(db, campaign_id)) == 50
