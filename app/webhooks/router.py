"""`/v1/webhooks`: admin only. A webhook sends what the team channel hears (campaign
decisions, who made them and why) to an address outside the deployment, so creating one is
handing that information out: the right that hands rights out (`admin`) is the one asked."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app import idempotency, pagination
from app.deps import Admin, SessionDep, SettingsDep
from app.webhooks import service
from app.webhooks.models import Webhook
from app.webhooks.signing import message_id

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="http(s) URL without credentials", max_length=2000)
    events: list[str] = Field(
        description='notification kinds (e.g. "campaign.killed"), or ["*"] for every kind',
        max_length=64,
    )


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    created_by: str
    created_at: datetime

    @classmethod
    def of(cls, webhook: Webhook) -> WebhookOut:
        return cls.model_validate(webhook, from_attributes=True)


class WebhookCreated(WebhookOut):
    secret: str | None = Field(
        description="whsec_...: verify each delivery's webhook-signature with it (Standard "
        "Webhooks). Shown once, never again: null when the answer is a replay of the same "
        "Idempotency-Key (delete the webhook and create it again if the first answer was lost)."
    )


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str | None
    retry_at: datetime | None


class DeliveryOut(BaseModel):
    id: int
    message_id: str = Field(description="the webhook-id header the receiver saw")
    type: str
    audit_sequence: int
    campaign_id: str | None
    status: str
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


@router.post("", response_model=WebhookCreated, status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookIn, request: Request, session: SessionDep, principal: Admin
) -> JSONResponse:
    """Subscribe `url` to notification kinds. The answer carries the signing secret, once."""

    async def create() -> tuple[int, dict[str, object]]:
        webhook = await service.create(session, principal, url=body.url, events=body.events)
        out = WebhookCreated(**WebhookOut.of(webhook).model_dump(), secret=webhook.secret)
        return 201, out.model_dump(mode="json")

    return await idempotency.run_once(
        session, request, principal, body.model_dump(), create, stored=_without_secret
    )


def _without_secret(answer: dict[str, object]) -> dict[str, object]:
    return {**answer, "secret": None}


@router.get("", response_model=list[WebhookOut])
async def list_webhooks(session: SessionDep, _: Admin) -> list[WebhookOut]:
    return [WebhookOut.of(w) for w in await service.list_live(session)]


@router.get("/{webhook_id}", response_model=WebhookOut)
async def get_webhook(webhook_id: uuid.UUID, session: SessionDep, _: Admin) -> WebhookOut:
    return WebhookOut.of(await service.get(session, webhook_id))


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: uuid.UUID, session: SessionDep, principal: Admin) -> Response:
    """Nothing more is sent to it; its deliveries stay listed."""
    await service.delete(session, principal, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    webhook_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    _: Admin,
    limit: Annotated[int, Query(ge=1)] = 50,
    cursor: str | None = None,
) -> DeliveryPage:
    """Every delivery, newest first, with each attempt: when, how long, the answer's status,
    the error, and when the next try is due."""
    limit = min(limit, settings.page_size_max)
    rows = await service.deliveries(
        session, webhook_id, limit=limit + 1, before_id=pagination.decode_int(cursor)
    )
    items, next_cursor = pagination.page(rows, limit, lambda d: d.message.id)
    return DeliveryPage(
        items=[
            DeliveryOut(
                id=d.message.id or 0,
                message_id=message_id(d.message.audit_sequence),
                type=d.message.kind,
                audit_sequence=d.message.audit_sequence,
                campaign_id=d.message.campaign_id,
                status=d.message.status,
                attempts=[AttemptOut.model_validate(a, from_attributes=True) for a in d.attempts],
                next_attempt_at=d.message.next_attempt_at
                if d.message.status == "pending"
                else None,
                sent_at=d.message.sent_at,
                last_error=d.message.last_error,
                created_at=d.message.created_at,
            )
            for d in items
        ],
        next_cursor=next_cursor,
    )
