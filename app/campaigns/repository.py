"""Campaign queries: the only place that builds statements over campaigns and their waves.

`may_send` is the database's last word before a send, written once: the send loop asks it
right before a batch's requests start, and the ledger's claim carries the same condition
(`may_send_clause`), so no row of a stopped campaign is even leased.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.campaigns.models import Campaign, CampaignKind, CampaignWave
from app.campaigns.state import SENDING_STATUSES, CampaignStatus
from app.killswitch.models import KillSwitch

# A campaign that can start sending without a person: the global switch pauses these.
LIVE_STATUSES = (CampaignStatus.running, CampaignStatus.scheduled)


async def get(
    session: AsyncSession, campaign_id: uuid.UUID, *, lock: bool = False
) -> Campaign | None:
    query = select(Campaign).where(col(Campaign.id) == campaign_id)
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def waves(session: AsyncSession, campaign_id: uuid.UUID) -> list[CampaignWave]:
    rows = await session.exec(
        select(CampaignWave)
        .where(col(CampaignWave.campaign_id) == campaign_id)
        .order_by(col(CampaignWave.index))
    )
    return list(rows.all())


async def live(session: AsyncSession, *, lock: bool = False) -> list[Campaign]:
    """Running and scheduled campaigns."""
    query = select(Campaign).where(col(Campaign.status).in_([s.value for s in LIVE_STATUSES]))
    if lock:
        query = query.with_for_update()
    return list((await session.exec(query)).all())


async def newest(
    session: AsyncSession,
    *,
    limit: int,
    before: datetime | None,
    before_id: uuid.UUID | None,
    status: CampaignStatus | None,
    kind: CampaignKind | None,
) -> Sequence[Campaign]:
    """Newest first. The id breaks ties, so equal `created_at`s never repeat or skip one."""
    query = (
        select(Campaign)
        .order_by(col(Campaign.created_at).desc(), col(Campaign.id).desc())
        .limit(limit)
    )
    if before is not None and before_id is not None:
        created_at, ident = col(Campaign.created_at), col(Campaign.id)
        query = query.where(or_(created_at < before, and_(created_at == before, ident < before_id)))
    elif before is not None:
        query = query.where(col(Campaign.created_at) < before)
    if status is not None:
        query = query.where(col(Campaign.status) == status.value)
    if kind is not None:
        query = query.where(col(Campaign.kind) == kind.value)
    return (await session.exec(query)).all()


async def wave_counts(
    session: AsyncSession, campaign_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if not campaign_ids:
        return {}
    rows = await session.exec(
        select(col(CampaignWave.campaign_id), func.count())
        .where(col(CampaignWave.campaign_id).in_(list(campaign_ids)))
        .group_by(col(CampaignWave.campaign_id))
    )
    return {campaign_id: int(n) for campaign_id, n in rows.all()}


def stopped_for_good_clause(campaign_id: ColumnElement[uuid.UUID]) -> ColumnElement[bool]:
    """True when the campaign was killed or cancelled: for a statement over delivery rows,
    whose rows coming back from a worker or an expired lease must not become sendable."""
    return exists().where(
        and_(
            col(Campaign.id) == campaign_id,
            col(Campaign.status).in_([CampaignStatus.killed.value, CampaignStatus.cancelled.value]),
        )
    )


def may_send_clause(campaign_id: uuid.UUID | ColumnElement[uuid.UUID]) -> ColumnElement[bool]:
    """True while the campaign may start provider requests: it is sending and the global
    kill switch is released. For a statement's WHERE (the ledger's claim)."""
    sending = exists().where(
        and_(
            col(Campaign.id) == campaign_id,
            col(Campaign.status).in_([s.value for s in SENDING_STATUSES]),
        )
    )
    engaged = exists().where(col(KillSwitch.engaged).is_(True))
    return and_(sending, ~engaged)


async def may_send(session: AsyncSession, campaign_id: uuid.UUID) -> bool:
    """The database's last word before a batch's requests start."""
    return bool((await session.execute(select(may_send_clause(campaign_id)))).scalar_one())


async def ids_with_status(session: AsyncSession, status: CampaignStatus) -> list[uuid.UUID]:
    rows = await session.exec(select(Campaign.id).where(col(Campaign.status) == status.value))
    return list(rows.all())


async def due_scheduled(session: AsyncSession, now: datetime) -> list[uuid.UUID]:
    """Scheduled campaigns whose start time has come."""
    rows = await session.exec(
        select(Campaign.id).where(
            col(Campaign.status) == CampaignStatus.scheduled.value,
            col(Campaign.start_at) <= now,
        )
    )
    return list(rows.all())


async def changed(session: AsyncSession, wanted: ColumnElement[bool]) -> Sequence[Campaign]:
    """The campaigns the grant sync re-publishes (`engine.sync_grants` says which)."""
    return (await session.exec(select(Campaign).where(wanted))).all()
