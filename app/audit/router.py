from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from app import pagination
from app.audit import export, service
from app.audit.schemas import AuditEventOut, AuditPage
from app.deps import Admin, CampaignsReader, RuntimeDep, SessionDep, SettingsDep
from app.errors import FieldError, validation_problem
from app.instants import Instant
from app.notify import service as notifications

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
async def list_audit(
    session: SessionDep,
    settings: SettingsDep,
    _: CampaignsReader,
    limit: Annotated[int, Query(ge=1)] = 100,
    cursor: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    since: Annotated[
        Instant | None, Query(description="ISO-8601 with a time zone; events from it (inclusive)")
    ] = None,
    until: Annotated[
        Instant | None, Query(description="ISO-8601 with a time zone; events before it (exclusive)")
    ] = None,
) -> AuditPage:
    limit = min(limit, settings.page_size_max)
    rows = await service.list_events(
        session,
        limit=limit + 1,
        before_id=pagination.decode_int(cursor),
        action=action,
        actor=actor,
        subject_type=subject_type,
        subject_id=subject_id,
        since=since,
        until=until,
    )
    items, next_cursor = pagination.page(rows, limit, lambda e: e.id)
    posts = await notifications.slack_posts(session, [e.sequence for e in items if e.sequence])
    return AuditPage(
        items=[
            AuditEventOut.model_validate(e, from_attributes=True).model_copy(
                update=posts.get(e.sequence or 0, {})
            )
            for e in items
        ],
        next_cursor=next_cursor,
    )


class NDJSONResponse(StreamingResponse):
    media_type = export.MEDIA_TYPE


@router.get(
    "/export",
    response_class=NDJSONResponse,
    responses={
        200: {
            "description": "One line per event in chain order, then the head line",
            "content": {export.MEDIA_TYPE: {"schema": {"type": "string"}}},
        }
    },
)
async def export_audit(
    runtime: RuntimeDep,
    _: Admin,
    since: Annotated[
        Instant | None,
        Query(alias="from", description="ISO-8601 with a time zone; events from it (inclusive)"),
    ] = None,
    until: Annotated[
        Instant | None,
        Query(alias="to", description="ISO-8601 with a time zone; events before it (exclusive)"),
    ] = None,
) -> NDJSONResponse:
    """The audit log's events that occurred in [from, to), as NDJSON in chain order, each line
    an event's hashed fields with its `prev_hash` and `hash`, then a last line with the chain
    head at export time. Streamed; re-verify it offline with `wavecast audit verify-export`."""
    problem = export.range_problem(since, until)
    if problem is not None:
        raise validation_problem([FieldError("query.to", problem)])
    plan = await service.plan_export(runtime.sessionmaker, since=since, until=until)
    return NDJSONResponse(service.export_lines(runtime.sessionmaker, plan))
