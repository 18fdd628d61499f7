from __future__ import annotations

import uuid
from typing import Annotated, Any, Self

from fastapi import Body, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app import pagination
from app.auth.principal import Principal
from app.deps import Admin, DevicesReader, DevicesWriter, RuntimeDep, SessionDep, writing
from app.devices import importer, service
from app.devices.models import DeviceStatus, Platform
from app.devices.schemas import DeviceOut, DevicePage, DevicePatch, DeviceRegistration, ImportResult
from app.instants import Instant
from app.serving import PrefixRouter

router = PrefixRouter(prefix="/v1/devices", tags=["devices"])


class TestDeviceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000)


class TestMarks(BaseModel):
    """Which devices to mark: exactly one of a saved segment, audience rules, or tokens."""

    model_config = ConfigDict(extra="forbid")
    segment_id: uuid.UUID | None = None
    rules: dict[str, Any] | None = None
    tokens: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        default=None, min_length=1, max_length=service.MAX_BULK_TEST_MARKS
    )
    # False unmarks them.
    test_device: bool = True
    reason: str = Field(min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _exactly_one_selector(self) -> Self:
        given = [
            name for name in ("segment_id", "rules", "tokens") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of segment_id, rules or tokens"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class TestMarksOut(BaseModel):
    matched: int
    changed: int


@router.post(
    "",
    response_model=DeviceOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": DeviceOut, "description": "An existing token was updated"}},
)
async def register_device(body: DeviceRegistration, request: Request, _: DevicesWriter) -> Response:
    async with writing(request) as connection:
        device, created = await service.register(connection, body)
    # Serialised here, once: returned as a model it would be validated again against
    # `response_model` (which stays, for the API's description).
    return Response(
        device.model_dump_json(),
        status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        media_type="application/json",
    )


@router.post(
    "/import",
    response_model=ImportResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
)
async def import_devices(request: Request, runtime: RuntimeDep, _: DevicesWriter) -> ImportResult:
    """Register many devices from NDJSON (one registration object per line), streamed."""
    return await importer.import_stream(runtime.sessionmaker, request.stream())


@router.get("", response_model=DevicePage)
async def list_devices(
    session: SessionDep,
    _: DevicesReader,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1)] = 100,
    cursor: str | None = None,
    platform: Platform | None = None,
    status_: Annotated[DeviceStatus | None, Query(alias="status")] = None,
    user_id: str | None = None,
    token: str | None = None,
    is_test_device: bool | None = None,
    locale: str | None = None,
    seen_since: Annotated[
        Instant | None, Query(description="ISO-8601 with a time zone; devices seen since it")
    ] = None,
) -> DevicePage:
    limit = min(limit, runtime.settings.page_size_max)
    rows = await service.list_devices(
        session,
        limit=limit + 1,
        after=pagination.decode_uuid(cursor),
        platform=platform,
        status=status_,
        user_id=user_id,
        token=token,
        is_test_device=is_test_device,
        locale=locale,
        seen_since=seen_since,
    )
    items, next_cursor = pagination.page(rows, limit, lambda d: d.id)
    return DevicePage(items=[DeviceOut.model_validate(d) for d in items], next_cursor=next_cursor)


@router.get("/{device_id}", response_model=DeviceOut)
async def get_device(device_id: uuid.UUID, session: SessionDep, _: DevicesReader) -> DeviceOut:
    return DeviceOut.model_validate(await service.get(session, device_id))


@router.patch("/{device_id}", response_model=DeviceOut)
async def patch_device(
    device_id: uuid.UUID, body: DevicePatch, session: SessionDep, _: DevicesWriter
) -> DeviceOut:
    return DeviceOut.model_validate(await service.update(session, device_id, body))


@router.delete("/{device_id}", response_model=DeviceOut)
async def unregister_device(
    device_id: uuid.UUID, session: SessionDep, _: DevicesWriter
) -> DeviceOut:
    return DeviceOut.model_validate(await service.unregister(session, device_id))


@router.post("/test-marks", response_model=TestMarksOut)
async def mark_test_devices(body: TestMarks, session: SessionDep, principal: Admin) -> TestMarksOut:
    """Mark many QA devices as test devices at once (admin only, audited as one event), or
    unmark them with `"test_device": false`. Outside production a real provider reaches test
    devices only. At most 10,000 devices per call."""
    marking = await service.set_test_devices(
        session,
        principal,
        segment_id=body.segment_id,
        rules=body.rules,
        tokens=body.tokens,
        is_test=body.test_device,
        reason=body.reason,
    )
    return TestMarksOut(matched=marking.matched, changed=marking.changed)


@router.put("/{device_id}/test-device", response_model=DeviceOut)
async def mark_test_device(
    device_id: uuid.UUID,
    session: SessionDep,
    principal: Admin,
    body: Annotated[TestDeviceChange | None, Body()] = None,
) -> DeviceOut:
    """Mark a test device (admin only, audited): test campaigns may reach it."""
    return await _set_test_device(session, principal, device_id, body, is_test=True)


@router.delete("/{device_id}/test-device", response_model=DeviceOut)
async def unmark_test_device(
    device_id: uuid.UUID,
    session: SessionDep,
    principal: Admin,
    body: Annotated[TestDeviceChange | None, Body()] = None,
) -> DeviceOut:
    return await _set_test_device(session, principal, device_id, body, is_test=False)


async def _set_test_device(
    session: SessionDep,
    principal: Principal,
    device_id: uuid.UUID,
    body: TestDeviceChange | None,
    *,
    is_test: bool,
) -> DeviceOut:
    device = await service.set_test_device(
        session, principal, device_id, is_test=is_test, reason=body.reason if body else None
    )
    return DeviceOut.model_validate(device)
