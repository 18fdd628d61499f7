from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends

from app.approval import service
from app.approval.schemas import ApprovalStatus, ApproveRequest
from app.auth.models import Scope
from app.auth.principal import Principal
from app.campaigns import service as campaigns
from app.deps import CampaignsReader, SessionDep, SettingsDep, require

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])

CampaignsApprover = Annotated[Principal, Depends(require(Scope.campaigns_approve))]


@router.post(
    "/{campaign_id}/approve",
    response_model=ApprovalStatus,
    responses={
        403: {"description": "not a human with campaigns:approve, or the campaign's author"},
        409: {
            "description": "the campaign is no longer a draft, or it changed since it was "
            "read (expected_binding)"
        },
    },
)
async def approve_campaign(
    campaign_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    principal: CampaignsApprover,
    body: Annotated[ApproveRequest | None, Body()] = None,
) -> ApprovalStatus:
    """Approve a draft campaign (content, audience, rollout, checks, throttle and any guard
    override): by a human other than the people who created or edited it. With
    `expected_binding` (the `binding` of GET .../approval when it was read), refused 409 if
    the campaign changed since; without it, the campaign as it is now is approved. Any edit
    voids the approval."""
    await service.approve(
        session,
        settings,
        principal,
        campaign_id,
        comment=body.comment if body else None,
        expected_binding=body.expected_binding if body else None,
    )
    return await service.status(session, settings, await campaigns.get(session, campaign_id))


@router.get("/{campaign_id}/approval", response_model=ApprovalStatus)
async def campaign_approval(
    campaign_id: uuid.UUID, session: SessionDep, settings: SettingsDep, _: CampaignsReader
) -> ApprovalStatus:
    """Whether the campaign needs an approval to start, whether it has one that covers it
    as it is now, and who may give it."""
    return await service.status(session, settings, await campaigns.get(session, campaign_id))
