from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Query, Request, status
from fastapi.responses import JSONResponse, Response

from app import idempotency, pagination
from app.campaigns import commands, service
from app.campaigns.models import Campaign, CampaignKind
from app.campaigns.schemas import (
    CampaignCreate,
    CampaignOut,
    CampaignPage,
    CampaignPatch,
    DeliveryOut,
    DeliveryPage,
    ExtendHoldRequest,
    OptionalReason,
    PreviewOut,
    PromoteRequest,
    Reason,
    StartRequest,
    StopOutcome,
)
from app.campaigns.state import CampaignStatus
from app.control.plane import Control
from app.delivery.models import DeliveryStatus
from app.deps import (
    CampaignsOperator,
    CampaignsReader,
    CampaignsWriter,
    KillOperator,
    RedisDep,
    SessionDep,
    SettingsDep,
    reading,
)
from app.rollout.planner import MAX_WAVES
from app.serving import PrefixRouter

router = PrefixRouter(prefix="/v1/campaigns", tags=["campaigns"])
JSON = "application/json"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CampaignOut,
    responses={422: {"description": "invalid, or refused by the environment guard"}},
)
async def create_campaign(
    body: CampaignCreate,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: CampaignsWriter,
) -> JSONResponse:
    """Create a draft campaign. Send `Idempotency-Key` to make retries safe."""

    async def create() -> tuple[int, dict[str, object]]:
        campaign = await service.create(session, settings, principal, body)
        view = await service.view(session, campaign)
        return 201, view.model_dump(mode="json")

    return await idempotency.run_once(
        session, request, principal, body.model_dump(mode="json"), create
    )


@router.post("/preview", response_model=PreviewOut)
async def preview_campaign(
    body: CampaignCreate, session: SessionDep, settings: SettingsDep, _: CampaignsWriter
) -> PreviewOut:
    """Validate a campaign and show its audience, waves and the guard's verdict; stores nothing."""
    return await service.preview(session, settings, body)


@router.get("", response_model=CampaignPage)
async def list_campaigns(
    session: SessionDep,
    settings: SettingsDep,
    _: CampaignsReader,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
    status_: Annotated[CampaignStatus | None, Query(alias="status")] = None,
    kind: CampaignKind | None = None,
) -> CampaignPage:
    page, next_cursor = await service.page_campaigns(
        session,
        limit=min(limit, settings.page_size_max),
        cursor=cursor,
        status=status_,
        kind=kind,
    )
    return CampaignPage(items=page, next_cursor=next_cursor)


@router.get("/{campaign_id}", response_model=CampaignOut)
async def get_campaign(campaign_id: uuid.UUID, request: Request, _: CampaignsReader) -> Response:
    async with reading(request) as connection:
        view = await service.read_view(connection, campaign_id)
    # Built and serialised by the service, once: returned as a model it would be validated
    # again against `response_model` (which stays, for the API's description).
    return Response(view, media_type=JSON)


@router.patch("/{campaign_id}", response_model=CampaignOut)
async def patch_campaign(
    campaign_id: uuid.UUID,
    body: CampaignPatch,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    principal: CampaignsWriter,
) -> CampaignOut:
    """Edit a draft; once started, only `throttle` and `failure_threshold_percent` change
    (a new throttle reaches every worker within a second), and for an approved campaign no
    looser than its approval covered (409 naming each looser field)."""
    campaign = await commands.edit(session, Control(redis), settings, principal, campaign_id, body)
    return await service.view(session, campaign)


@router.post("/{campaign_id}/start", response_model=CampaignOut)
async def start_campaign(
    campaign_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    redis: RedisDep,
    principal: CampaignsOperator,
    body: Annotated[StartRequest | None, Body()] = None,
) -> CampaignOut:
    """Start now, or schedule when `start_at` is later. The guard checks again."""
    campaign = await commands.start(
        session,
        Control(redis),
        settings,
        principal,
        campaign_id,
        override_reason=body.override.reason if body and body.override else None,
        reason=body.reason if body else None,
    )
    return await service.view(session, campaign)


@router.post("/{campaign_id}/resume", response_model=CampaignOut)
async def resume_campaign(
    campaign_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    principal: CampaignsOperator,
    body: Annotated[OptionalReason | None, Body()] = None,
) -> CampaignOut:
    campaign = await commands.resume(
        session, Control(redis), principal, campaign_id, reason=body.reason if body else None
    )
    return await service.view(session, campaign)


@router.post("/{campaign_id}/promote", response_model=CampaignOut)
async def promote_campaign(
    campaign_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    principal: CampaignsOperator,
    body: Annotated[PromoteRequest | None, Body()] = None,
) -> CampaignOut:
    """Skip the rest of the current wave's hold. The wave's checks must have passed (409
    naming those that have not), unless `override.reason` says why the next wave goes
    without them. The engine releases the next wave on its next tick."""
    campaign = await service.promote(
        session,
        settings,
        principal,
        campaign_id,
        override_reason=body.override.reason if body and body.override else None,
        reason=body.reason if body else None,
    )
    return await service.view(session, campaign)


@router.post("/{campaign_id}/extend-hold", response_model=CampaignOut)
async def extend_hold(
    campaign_id: uuid.UUID,
    body: ExtendHoldRequest,
    session: SessionDep,
    principal: CampaignsOperator,
) -> CampaignOut:
    """Hold the current wave `seconds` longer (undoes an earlier promotion)."""
    campaign = await service.extend_hold(
        session, principal, campaign_id, seconds=body.seconds, reason=body.reason
    )
    return await service.view(session, campaign)


async def _stopped(session: SessionDep, campaign: Campaign) -> StopOutcome:
    return StopOutcome(campaign=await service.view(session, campaign), in_flight_at_answer=0)


@router.post("/{campaign_id}/pause", response_model=StopOutcome)
async def pause_campaign(
    campaign_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    principal: CampaignsOperator,
    body: Annotated[OptionalReason | None, Body()] = None,
) -> StopOutcome:
    """Pause: no provider request starts after this answer; resume continues where it was.
    503 when that cannot be confirmed yet (ask again)."""
    campaign = await commands.pause(
        session, Control(redis), principal, campaign_id, reason=body.reason if body else None
    )
    return await _stopped(session, campaign)


@router.post("/{campaign_id}/cancel", response_model=StopOutcome)
async def cancel_campaign(
    campaign_id: uuid.UUID,
    session: SessionDep,
    redis: RedisDep,
    principal: CampaignsOperator,
    body: Annotated[OptionalReason | None, Body()] = None,
) -> StopOutcome:
    """Cancel: terminal; queued deliveries become `cancelled`, in-flight ones finish."""
    campaign = await commands.cancel(
        session, Control(redis), principal, campaign_id, reason=body.reason if body else None
    )
    return await _stopped(session, campaign)


@router.post("/{campaign_id}/kill", response_model=StopOutcome)
async def kill_campaign(
    campaign_id: uuid.UUID,
    body: Reason,
    session: SessionDep,
    redis: RedisDep,
    principal: KillOperator,
) -> StopOutcome:
    """Kill: immediate and terminal. When this answers, no provider request for the campaign
    starts on any worker; queued deliveries are `cancelled`. 503 when that cannot be
    confirmed yet (ask again)."""
    campaign = await commands.kill(
        session, Control(redis), principal, campaign_id, reason=body.reason
    )
    return await _stopped(session, campaign)


@router.get("/{campaign_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    campaign_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    _: CampaignsReader,
    limit: Annotated[int, Query(ge=1)] = 100,
    cursor: str | None = None,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    wave: Annotated[int | None, Query(ge=0, lt=MAX_WAVES)] = None,
) -> DeliveryPage:
    await service.get(session, campaign_id)
    limit = min(limit, settings.page_size_max)
    rows = await service.deliveries_page(
        session,
        campaign_id,
        limit=limit + 1,
        after=pagination.decode_int(cursor),
        status=status_,
        wave=wave,
    )
    items, next_cursor = pagination.page(rows, limit, lambda d: d.id)
    return DeliveryPage(
        items=[DeliveryOut.model_validate(d, from_attributes=True) for d in items],
        next_cursor=next_cursor,
    )
