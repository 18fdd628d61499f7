"""Statements the Slack commands need: campaigns by what a person types, and the requests
for a second person's Confirm (audit events, read only)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import String, cast
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit.models import AuditEvent
from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus

MIN_PREFIX = 8
# The audit action of a Confirm pressed (app.slack.commands.confirm records it).
CONFIRMED = "slack.confirmed"


async def campaigns_matching(session: AsyncSession, ref: str) -> Sequence[Campaign]:
    """The campaigns `ref` names: a whole id, the start of one (8+ characters), or an exact
    name."""
    ref = ref.strip()
    try:
        found = await session.get(Campaign, uuid.UUID(ref))
        return [found] if found is not None else []
    except ValueError:
        pass
    hexish = ref.lower()
    if len(hexish) >= MIN_PREFIX and all(c in "0123456789abcdef-" for c in hexish):
        query = select(Campaign).where(cast(col(Campaign.id), String).startswith(hexish)).limit(6)
        by_id = (await session.exec(query)).all()
        if by_id:
            return by_id
    query = select(Campaign).where(col(Campaign.name) == ref).limit(6)
    return (await session.exec(query)).all()


async def campaigns_in(
    session: AsyncSession, statuses: Sequence[CampaignStatus]
) -> Sequence[Campaign]:
    query = (
        select(Campaign)
        .where(col(Campaign.status).in_([s.value for s in statuses]))
        .order_by(col(Campaign.created_at).desc())
        .limit(30)
    )
    return (await session.exec(query)).all()


async def event(session: AsyncSession, sequence: int) -> AuditEvent | None:
    query = select(AuditEvent).where(col(AuditEvent.sequence) == sequence)
    return (await session.exec(query)).first()


async def confirmation_of(session: AsyncSession, request_sequence: int) -> AuditEvent | None:
    """The confirmation given to the request, if one was (the events naming it)."""
    query = (
        select(AuditEvent)
        .where(col(AuditEvent.action) == CONFIRMED)
        .order_by(col(AuditEvent.id).desc())
        .limit(200)
    )
    for found in (await session.exec(query)).all():
        if (found.after or {}).get("request") == request_sequence:
            return found
    return None
