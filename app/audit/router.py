from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from app import pagination
from app.audit import service
from app.audit.schemas import AuditEventOut, AuditPage
from app.deps import CampaignsReader, SessionDep, SettingsDep

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
    since: datetime | None = None,
    until: datetime | None = None,
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
    return AuditPage(
        items=[AuditEventOut.model_validate(e, from_attributes=True) for e in items],
        next_cursor=next_cursor,
    )
