from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from app import pagination
from app.auth.principal import Principal
from app.deps import Admin, DevicesReader, DevicesWriter, RuntimeDep, SessionDep
from app.devices import importer, service
from app.devices.models import DeviceStatus, Platform
from app.devices.schemas import DeviceOut, DevicePage, DevicePatch, DeviceRegistration, ImportResult

router = APIRouter(prefix="/v1/devices", tags=["devices"])


class TestDeviceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000)


@router.post(
    "",
    response_model=DeviceOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": DeviceOut, "description": "An existing token was updated"}},
)
async def register_device(
    body: DeviceRegistration, session: SessionDep, _: DevicesWriter, response: Response
) -> DeviceOut:
    device, created = await service.register(session, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return DeviceOut.model_validate(device)


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
    seen_since: datetime | None = None,
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
