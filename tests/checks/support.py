"""Helpers of the wave check tests: drive the real engine tick by tick, read what it did."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

from sqlmodel import col, select

from app.campaigns.models import CampaignWave
from app.campaigns.state import CampaignStatus
from app.checks.models import WaveCheckResult
from app.db.types import utcnow
from app.delivery.sender import pump
from app.rollout import engine
from app.runtime import Runtime
from app.settings import Settings
from tests.support import campaign_status, sender_deps

STOPPED = {CampaignStatus.paused, CampaignStatus.completed}


async def drive(
    db: Runtime,
    campaign_id: uuid.UUID,
    *,
    ticks: int,
    start: datetime | None = None,
    settings: Settings | None = None,
    real_time: bool = False,
) -> tuple[CampaignStatus, datetime]:
    """Tick (a second of the engine's clock each, or the wall clock every 0.2 s) and send,
    as a worker would, until the campaign pauses or completes or the ticks run out."""
    settings = settings or db.settings
    deps = await sender_deps(db, settings)
    now = start or utcnow()
    status = await campaign_status(db, campaign_id)
    try:
        for _ in range(ticks):
            if real_time:
                await asyncio.sleep(0.2)
                now = utcnow()
            report = await engine.tick(db.sessionmaker, deps.control, settings, now=now)
            if campaign_id in report.sendable:
                await pump(deps, campaign_id, budget_seconds=10)
            status = await campaign_status(db, campaign_id)
            if status in STOPPED:
                break
            now += timedelta(seconds=1)
    finally:
        await deps.control.watch.aclose()
    return status, now


async def waves_of(db: Runtime, campaign_id: uuid.UUID) -> list[CampaignWave]:
    async with db.sessionmaker() as session:
        query = select(CampaignWave).where(CampaignWave.campaign_id == campaign_id)
        return list((await session.exec(query.order_by(col(CampaignWave.index)))).all())


async def results_of(db: Runtime, campaign_id: uuid.UUID) -> list[WaveCheckResult]:
    async with db.sessionmaker() as session:
        query = select(WaveCheckResult).where(WaveCheckResult.campaign_id == campaign_id)
        return list((await session.exec(query.order_by(col(WaveCheckResult.id)))).all())
