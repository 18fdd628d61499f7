"""Statements over `wave_check_result`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.checks.evaluate import Outcome, Result
from app.checks.models import WaveCheckResult


def add(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    wave: int,
    outcomes: Sequence[Outcome],
    now: datetime,
) -> None:
    session.add_all(
        WaveCheckResult(
            campaign_id=campaign_id,
            wave=wave,
            check_name=o.name,
            result=o.result.value,
            value=o.value,
            detail=o.detail,
            observed_at=now,
        )
        for o in outcomes
    )


async def last_runs(
    session: AsyncSession, campaign_id: uuid.UUID, wave: int
) -> dict[str, datetime]:
    """When each check last ran during this wave."""
    rows = await session.execute(
        select(WaveCheckResult.check_name, func.max(WaveCheckResult.observed_at))  # type: ignore[call-overload]
        .where(col(WaveCheckResult.campaign_id) == campaign_id, col(WaveCheckResult.wave) == wave)
        .group_by(WaveCheckResult.check_name)
    )
    return {str(name): at for name, at in rows}


async def outcomes_since(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    wave: int,
    since: datetime,
    latest: Mapping[str, int],
) -> list[Outcome]:
    """This wave's results from `since` on, at most `latest[name]` of each check (its newest),
    in the order they were stored. One statement per check, each walking the index
    backwards from the newest result: a long hold's history is never read in full."""
    rows: list[WaveCheckResult] = []
    for name, limit in latest.items():
        query = (
            select(WaveCheckResult)
            .where(
                col(WaveCheckResult.campaign_id) == campaign_id,
                col(WaveCheckResult.wave) == wave,
                col(WaveCheckResult.observed_at) >= since,
                col(WaveCheckResult.check_name) == name,
            )
            .order_by(col(WaveCheckResult.observed_at).desc(), col(WaveCheckResult.id).desc())
            .limit(limit)
        )
        rows += (await session.execute(query)).scalars().all()
    rows.sort(key=lambda r: (r.observed_at, r.id or 0))
    return [Outcome(r.check_name, Result(r.result), r.value, r.detail) for r in rows]


async def latest(session: AsyncSession, campaign_id: uuid.UUID, wave: int) -> list[WaveCheckResult]:
    """Each check's newest result during this wave, by check name."""
    newest = (
        select(func.max(WaveCheckResult.id))
        .where(col(WaveCheckResult.campaign_id) == campaign_id, col(WaveCheckResult.wave) == wave)
        .group_by(WaveCheckResult.check_name)
    )
    rows = await session.execute(
        select(WaveCheckResult)
        .where(col(WaveCheckResult.id).in_(newest))
        .order_by(col(WaveCheckResult.check_name))
    )
    return list(rows.scalars().all())
