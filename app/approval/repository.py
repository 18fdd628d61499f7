"""Statements over `campaign_approval`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.approval.models import CampaignApproval


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
