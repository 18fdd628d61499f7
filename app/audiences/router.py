from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Self

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app import idempotency
from app.audiences import service
from app.audiences.models import Segment
from app.deps import CampaignsReader, CampaignsWriter, SessionDep, SettingsDep

router = APIRouter(tags=["audiences"])

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    rules: dict[str, Any]


class SegmentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    rules: dict[str, Any] | None = None


class SegmentOut(BaseModel):
    id: uuid.UUID
    name: str
    rules: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, segment: Segment) -> SegmentOut:
        return cls.model_validate(segment, from_attributes=True)


class EstimateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: dict[str, Any] | None = None
    segment_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.rules is None) == (self.segment_id is None):
            raise ValueError("give exactly one of rules or segment_id")
        return self


class EstimateOut(BaseModel):
    count: int
    by_platform: dict[str, int] = Field(description="devices per platform")


@router.post(
    "/v1/segments",
    response_model=SegmentOut,
    status_code=status.HTTP_201_CREATED,
    tags=["audiences"],
)
async def create_segment(
    body: SegmentIn, request: Request, session: SessionDep, principal: CampaignsWriter
) -> JSONResponse:
    async def create() -> tuple[int, dict[str, object]]:
        segment = await service.create_segment(session, principal, name=body.name, rules=body.rules)
        return 201, SegmentOut.of(segment).model_dump(mode="json")

    return await idempotency.run_once(session, request, principal, body.model_dump(), create)


@router.get("/v1/segments", response_model=list[SegmentOut])
async def list_segments(
    session: SessionDep,
    settings: SettingsDep,
    _: CampaignsReader,
    limit: Annotated[int | None, Query(ge=1, description="at most PAGE_SIZE_MAX")] = None,
    after: Annotated[
        str | None, Query(max_length=200, description="the last name of the previous page")
    ] = None,
) -> list[SegmentOut]:
    """Segments by name, a page at a time: pass the last name seen as `after`."""
    capped = min(limit or settings.page_size_max, settings.page_size_max)
    rows = await service.list_segments(session, limit=capped, after=after)
    return [SegmentOut.of(s) for s in rows]


@router.get("/v1/segments/{segment_id}", response_model=SegmentOut)
async def get_segment(segment_id: uuid.UUID, session: SessionDep, _: CampaignsReader) -> SegmentOut:
    return SegmentOut.of(await service.get_segment(session, segment_id))


@router.patch("/v1/segments/{segment_id}", response_model=SegmentOut)
async def patch_segment(
    segment_id: uuid.UUID, body: SegmentPatch, session: SessionDep, principal: CampaignsWriter
) -> SegmentOut:
    segment = await service.update_segment(
        session, principal, segment_id, name=body.name, rules=body.rules
    )
    return SegmentOut.of(segment)


@router.delete("/v1/segments/{segment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_segment(
    segment_id: uuid.UUID, session: SessionDep, principal: CampaignsWriter
) -> Response:
    await service.delete_segment(session, principal, segment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/audience/estimate", response_model=EstimateOut)
async def estimate(body: EstimateIn, session: SessionDep, _: CampaignsReader) -> EstimateOut:
    """How many active devices an audience holds now."""
    rules, _segment = await service.resolve(
        session, segment_id=body.segment_id, rules=body.rules, field="body"
    )
    count, by_platform = await service.estimate(session, rules)
    return EstimateOut(count=count, by_platform=by_platform)
