"""The kill switch, the audit log, devices and segments."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from app import pagination
from app.audiences import service as audiences
from app.audit import repository as audit_repo
from app.auth.models import Scope
from app.campaigns import commands
from app.campaigns.schemas import Reason
from app.control.plane import Control
from app.db.session import unit_of_work
from app.deps import RuntimeDep, SessionDep
from app.devices import repository as devices_repo
from app.devices import service as devices_service
from app.devices.models import Platform
from app.errors import Problem
from app.killswitch import service as killswitch
from app.ui.campaign_pages import page_size_max, read_form
from app.ui.deps import AdminOperator, Killer, Operator, Reader, Watcher
from app.ui.render import page, see_other

router = APIRouter(prefix="/ui")

PAGE_SIZE = 50


# ---------------------------------------------------------------- kill switch
async def _switch_page(
    request: Request, runtime: RuntimeDep, op: Operator, error: str | None, status_code: int
) -> HTMLResponse:
    async with unit_of_work(runtime.sessionmaker) as session:
        switch = await killswitch.get_switch(session)
        events = await audit_repo.list_events(session, limit=20, subject_type="kill_switch")
    return page(
        request,
        "kill_switch.html",
        status_code=status_code,
        op=op,
        switch=switch,
        events=events,
        error=error,
    )


@router.get("/kill-switch", response_class=HTMLResponse, include_in_schema=False)
async def kill_switch_page(request: Request, runtime: RuntimeDep, op: Watcher) -> HTMLResponse:
    return await _switch_page(request, runtime, op, None, 200)


async def _switch_change(
    request: Request, runtime: RuntimeDep, op: Operator, engage: bool
) -> Response:
    single, _ = await read_form(request)
    verb = "engage" if engage else "release"
    if single.get("confirm") != "yes":
        return await _switch_page(request, runtime, op, f"{verb}: tick the confirmation box", 422)
    try:
        body = Reason(reason=single.get("reason", ""))
    except ValidationError:
        return await _switch_page(request, runtime, op, f"{verb}: a reason is required", 422)
    try:
        control = Control(runtime.redis)
        async with unit_of_work(runtime.sessionmaker) as session:
            if engage:
                await commands.engage_switch(session, control, op.principal, reason=body.reason)
            else:
                await commands.release_switch(session, control, op.principal, reason=body.reason)
    except Problem as problem:
        if problem.status in (401, 403):
            raise
        return await _switch_page(request, runtime, op, f"{verb}: {problem.detail}", problem.status)
    return see_other("/ui/kill-switch")


@router.post("/kill-switch/engage", include_in_schema=False)
async def engage(request: Request, runtime: RuntimeDep, op: Killer) -> Response:
    return await _switch_change(request, runtime, op, engage=True)


@router.post("/kill-switch/release", include_in_schema=False)
async def release(request: Request, runtime: RuntimeDep, op: AdminOperator) -> Response:
    return await _switch_change(request, runtime, op, engage=False)


# ---------------------------------------------------------------- audit log
@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_page(
    request: Request,
    session: SessionDep,
    op: Reader,
    action: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    rows = await audit_repo.list_events(
        session,
        limit=PAGE_SIZE + 1,
        before_id=pagination.decode_int(cursor) if cursor else None,
        action=action or None,
        subject_type=subject_type or None,
        subject_id=subject_id or None,
    )
    events, next_cursor = pagination.page(rows, PAGE_SIZE, lambda e: e.id)
    return page(
        request,
        "audit.html",
        op=op,
        events=events,
        next_cursor=next_cursor,
        filters={
            "action": action or "",
            "subject_type": subject_type or "",
            "subject_id": subject_id or "",
        },
    )


# ---------------------------------------------------------------- devices
@router.get("/devices", response_class=HTMLResponse, include_in_schema=False)
async def devices_page(
    request: Request,
    session: SessionDep,
    op: Reader,
    token: str | None = None,
    user_id: str | None = None,
    platform: str | None = None,
    test: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    # Tokens and user ids are personal data (`devices:read`): without that scope a key may
    # not even ask whether one is registered.
    if (token or user_id) and not op.can(Scope.devices_read):
        raise Problem(
            403, "Forbidden", "searching by token or user id needs the 'devices:read' scope"
        )
    rows = await devices_repo.list_devices(
        session,
        limit=PAGE_SIZE + 1,
        after=pagination.decode_uuid(cursor) if cursor else None,
        token=token or None,
        user_id=user_id or None,
        platform=Platform(platform) if platform in {p.value for p in Platform} else None,
        is_test_device={"yes": True, "no": False}.get(test or ""),
    )
    devices, next_cursor = pagination.page(rows, PAGE_SIZE, lambda d: d.id)
    return page(
        request,
        "devices.html",
        op=op,
        devices=devices,
        next_cursor=next_cursor,
        filters={
            "token": token or "",
            "user_id": user_id or "",
            "platform": platform or "",
            "test": test or "",
        },
        platforms=[p.value for p in Platform],
    )


@router.post("/devices/{device_id}/test-device", include_in_schema=False)
async def set_test_device(
    request: Request, device_id: uuid.UUID, runtime: RuntimeDep, op: AdminOperator
) -> Response:
    """Mark (or unmark) a test device: admin only, audited, with the reason given."""
    single, _ = await read_form(request)
    async with unit_of_work(runtime.sessionmaker) as session:
        await devices_service.set_test_device(
            session,
            op.principal,
            device_id,
            is_test=single.get("mark") == "yes",
            reason=single.get("reason", "").strip() or None,
        )
    back = single.get("back", "")
    return see_other(back if back.startswith("/ui/devices") else "/ui/devices")


# ---------------------------------------------------------------- segments
@router.get("/segments", response_class=HTMLResponse, include_in_schema=False)
async def segments_page(request: Request, session: SessionDep, op: Reader) -> HTMLResponse:
    segments = await audiences.list_segments(session, limit=page_size_max(request))
    return page(request, "segments.html", op=op, segments=segments)
