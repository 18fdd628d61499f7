"""The statements behind the opens budget: a campaign's sends and opens by the second."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, extract, func, select, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.delivery.models import Delivery
from app.events.models import EngagementEvent, EventType

_event = EngagementEvent.__table__  # type: ignore[attr-defined]
_delivery = Delivery.__table__  # type: ignore[attr-defined]


def _unix_second(session: AsyncSession, column: Any) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return func.floor(extract("epoch", column))
    return func.cast(func.strftime("%s", column), Integer)


def _delay_second(session: AsyncSession) -> ColumnElement[Any]:
    """Whole seconds from a delivery's send to its open, never below 0 (a quick thumb can
    open a push before the provider's answer is recorded as `sent_at`)."""
    if session.get_bind().dialect.name == "postgresql":
        seconds = extract("epoch", _event.c.occurred_at - _delivery.c.sent_at)
        return func.greatest(0, func.floor(seconds))
    days = func.julianday(_event.c.occurred_at) - func.julianday(_delivery.c.sent_at)
    return func.max(0, func.cast(days * 86400.0, Integer))


async def sends_per_second(
    session: AsyncSession, campaign_id: uuid.UUID, since: datetime | None = None
) -> list[tuple[int, int]]:
    """(Unix second, sends) of every second the campaign sent in (since ``since``, when
    given). Read from ``ix_delivery_campaign_sent_at``: a range of the campaign's sends, not
    its whole ledger."""
    second = _unix_second(session, _delivery.c.sent_at)
    condition = _delivery.c.sent_at.is_not(None)
    if since is not None:
        condition = _delivery.c.sent_at >= since
    rows = await session.execute(
        select(second.label("second"), func.count())
        .where(_delivery.c.campaign_id == campaign_id, condition)
        .group_by(second)
    )
    return [(int(s), int(n)) for s, n in rows]


async def opens_by_delay(session: AsyncSession, campaign_id: uuid.UUID) -> list[tuple[int, int]]:
    """(whole seconds from send to open, opens) over the campaign's reported opens."""
    delay = _delay_second(session)
    rows = await session.execute(
        select(delay.label("delay"), func.count())
        .select_from(_event.join(_delivery, _delivery.c.id == _event.c.delivery_id))
        .where(
            _event.c.campaign_id == campaign_id,
            _event.c.type == EventType.opened.value,
            _delivery.c.sent_at.is_not(None),
        )
        .group_by(delay)
    )
    return [(int(d), int(n)) for d, n in rows]


async def opens_per_second(
    session: AsyncSession, campaign_id: uuid.UUID, since: datetime
) -> list[tuple[int, int]]:
    """(Unix second, opens) of the campaign's opens that happened since ``since``."""
    second = _unix_second(session, _event.c.occurred_at)
    rows = await session.execute(
        select(second.label("second"), func.count())
        .where(
            _event.c.campaign_id == campaign_id,
            _event.c.type == EventType.opened.value,
            _event.c.occurred_at >= since,
        )
        .group_by(second)
    )
    return [(int(s), int(n)) for s, n in rows]


async def budgeted_running(session: AsyncSession) -> list[tuple[uuid.UUID, int, int]]:
    """(id, max_opens_per_second, throttle_per_second) of running campaigns with a budget."""
    rows = await session.execute(
        select(
            col(Campaign.id), col(Campaign.max_opens_per_second), col(Campaign.throttle_per_second)
        ).where(
            col(Campaign.status) == CampaignStatus.running.value,
            col(Campaign.max_opens_per_second).is_not(None),
        )
    )
    return [(cid, int(budget), int(rate)) for cid, budget, rate in rows]


async def set_effective(
    session: AsyncSession, campaign_id: uuid.UUID, per_second: float, reason: str
) -> None:
    """Record the rate the budget allows; only while the campaign runs with a budget (a
    stop or an edit that removed the budget since the figures were read wins)."""
    await session.execute(
        update(Campaign)
        .where(
            col(Campaign.id) == campaign_id,
            col(Campaign.status) == CampaignStatus.running.value,
            col(Campaign.max_opens_per_second).is_not(None),
        )
        .values(effective_per_second=per_second, effective_reason=reason)
    )
