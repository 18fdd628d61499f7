"""Statements over `campaign_approval`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.approval.models import CampaignApproval
from app.audit.models import AuditEvent

# The decisions that write a campaign: whoever made one of them wrote what is approved.
WRITES = ("campaign.created", "campaign.edited")


async def standing(session: AsyncSession, campaign_id: uuid.UUID) -> Sequence[CampaignApproval]:
    """The campaign's approvals not voided, newest first."""
    query = (
        select(CampaignApproval)
        .where(
            CampaignApproval.campaign_id == campaign_id,
            col(CampaignApproval.voided_at).is_(None),
        )
        .order_by(col(CampaignApproval.approved_at).desc())
    )
    return (await session.exec(query)).all()


async def latest(session: AsyncSession, campaign_id: uuid.UUID) -> CampaignApproval | None:
    """The campaign's newest approval, voided or not."""
    query = (
        select(CampaignApproval)
        .where(CampaignApproval.campaign_id == campaign_id)
        .order_by(col(CampaignApproval.approved_at).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def writers(session: AsyncSession, campaign_id: uuid.UUID) -> set[uuid.UUID]:
    """Every person who created or edited the campaign, as the audit log records them
    (events written before people existed name no one)."""
    query = (
        select(AuditEvent.person_id)
        .where(
            col(AuditEvent.subject_type) == "campaign",
            col(AuditEvent.subject_id) == str(campaign_id),
            col(AuditEvent.action).in_(WRITES),
            col(AuditEvent.person_id).is_not(None),
        )
        .distinct()
    )
    return {p for p in (await session.exec(query)).all() if p is not None}
