"""`POST /v1/events` (events:write) and `GET /v1/campaigns/{id}/engagement` (campaigns:read)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.campaigns import service as campaigns_service
from app.db.types import utcnow
from app.deps import CampaignsReader, EventsWriter, SessionDep
from app.errors import FieldError, Problem
from app.events import parse, service
from app.events.schemas import EngagementOut, EventIn, EventsResult
from app.instants import Instant
from app.ops.middleware import media_type

router = APIRouter(tags=["events"])

NDJSON = "application/x-ndjson"


@router.post(
    "/v1/events",
    response_model=EventsResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": EventIn.model_json_schema(),
                        "maxItems": parse.MAX_EVENTS,
                    }
                },
                NDJSON: {"schema": {"type": "string", "description": "one event object a line"}},
            },
        }
    },
)
async def post_events(request: Request, session: SessionDep, _: EventsWriter) -> EventsResult:
    """Report what became of pushes: `{ref, type, at?}` per event, `ref` being the push's
    `wavecast_ref`, `type` one of received, opened, converted, `at` an ISO-8601 timestamp
    with offset (default now; at most 5 minutes ahead, and at most 5 minutes before the wave
    that made the push was released). At most 10,000 events per request.

    Idempotent per (ref, type): the first report counts, later ones are `duplicates`. An
    entry with an unknown ref, a time before its push existed or a malformed one is listed
    in `rejected` by its index (its position in the array; in NDJSON its line number minus
    one) and never fails the rest."""
    ndjson = media_type(request.headers.get("content-type", "").encode()) == NDJSON
    body = await request.body()
    try:
        return await service.record(session, body, ndjson=ndjson, now=utcnow())
    except parse.BodyError as exc:
        status = 413 if exc.too_large else 400
        title = "Too many events" if exc.too_large else "Invalid request"
        raise Problem(status, title, exc.detail, errors=[FieldError("body", exc.detail)]) from None


@router.get("/v1/campaigns/{campaign_id}/engagement", response_model=EngagementOut)
async def get_engagement(
    campaign_id: uuid.UUID,
    session: SessionDep,
    _: CampaignsReader,
    since: Annotated[
        Instant | None,
        Query(
            description="start of the opens series (at most one hour from it); default: "
            "the last hour up to now, or up to the last open"
        ),
    ] = None,
) -> EngagementOut:
    """Per wave: sent, received, opened, converted, open rate (opened / sent) and time to
    open (p50, p90, seconds from send to open); and the campaign's opens per second."""
    await campaigns_service.get(session, campaign_id)
    waves = await campaigns_service.waves(session, campaign_id)
    return await service.engagement(
        session, campaign_id, [w.index for w in waves], now=utcnow(), since=since
    )
