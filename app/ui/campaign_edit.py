"""The campaign edit page: throttle, opens budget and wave checks.

The save runs the edit command the API's PATCH runs (`commands.edit`): the same service
checks, audit event and voided approval, and a running campaign's new throttle reaches
every worker within a second. One unit of work per request; nothing is saved on an error.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.campaigns import commands, service
from app.campaigns.state import is_terminal
from app.checks.spec import MAX_CHECKS
from app.control.plane import Control
from app.db.session import unit_of_work
from app.deps import RuntimeDep
from app.errors import Problem
from app.runtime import Runtime
from app.ui import check_rows
from app.ui.campaign_pages import problem_errors, read_form
from app.ui.deps import Operator, Writer
from app.ui.edit_form import CHECKS_SHOWN, EditForm, checks_editable
from app.ui.render import page, see_other

router = APIRouter(prefix="/ui")


async def _edit_page(
    request: Request,
    runtime: Runtime,
    op: Operator,
    campaign_id: uuid.UUID,
    form: EditForm | None = None,
    errors: dict[str, list[str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    async with unit_of_work(runtime.sessionmaker) as session:
        campaign = await service.get(session, campaign_id)
    if form is None:
        form = EditForm.of(campaign)
    return page(
        request,
        "edit_campaign.html",
        status_code=status_code,
        op=op,
        campaign=campaign,
        form=form,
        errors=errors or {},
        terminal=is_terminal(campaign.status),
        checks_editable=checks_editable(campaign),
        stored_checks=campaign.checks or [],
        default_checks=[c.stored() for c in runtime.settings.default_checks],
        checks_shown_field=CHECKS_SHOWN,
        max_checks=MAX_CHECKS,
        sources=check_rows.SOURCES,
        builtins=check_rows.BUILTINS,
        signs=check_rows.SIGNS,
        source_text=check_rows.source_text,
        condition_text=check_rows.condition_text,
    )


@router.get("/campaigns/{campaign_id}/edit", response_class=HTMLResponse, include_in_schema=False)
async def edit_campaign_form(
    request: Request, campaign_id: uuid.UUID, runtime: RuntimeDep, op: Writer
) -> HTMLResponse:
    return await _edit_page(request, runtime, op, campaign_id)


@router.post("/campaigns/{campaign_id}/edit", include_in_schema=False)
async def edit_campaign(
    request: Request, campaign_id: uuid.UUID, runtime: RuntimeDep, op: Writer
) -> Response:
    single, lists = await read_form(request)
    form = EditForm.from_form(single, lists)
    status_code = 422
    try:
        # Read and edited under the campaign's lock, so the waves the patch carries back
        # are the ones stored when it lands.
        async with unit_of_work(runtime.sessionmaker) as session:
            campaign = await service.get(session, campaign_id, lock=True)
            patch, errors = form.to_patch(campaign, await service.waves(session, campaign_id))
            if patch is not None:
                control = Control(runtime.redis)
                await commands.edit(
                    session, control, runtime.settings, op.principal, campaign_id, patch
                )
        if patch is not None:
            return see_other(f"/ui/campaigns/{campaign_id}")
    except Problem as problem:
        if problem.status in (401, 404):
            raise
        status_code = problem.status
        errors = form.fold(problem_errors(problem, [], form.check_rows()))
    return await _edit_page(request, runtime, op, campaign_id, form, errors, status_code)
