"""Campaigns: the list, the new-campaign form with its live checks, and the campaign page.

Every handler calls the domain services, and every change of state the commands
(`app.campaigns.commands`), so that a stop from the form waits for the send gate exactly as
the API's does; one unit of work per request.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app import idempotency
from app.approval import service as approval
from app.approval.schemas import ApproveRequest
from app.audiences import service as audiences
from app.audit import repository as audit_repo
from app.auth.models import Scope
from app.campaigns import commands, service
from app.campaigns.models import Campaign, CampaignKind, CampaignPriority
from app.campaigns.schemas import CampaignCreate, CampaignOut, Content, OptionalReason, Reason
from app.campaigns.state import TRANSITIONS, CampaignAction, CampaignStatus, is_terminal
from app.checks.spec import MAX_CHECKS
from app.control.plane import Control
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.deps import RuntimeDep, SessionDep
from app.errors import FieldError, Problem, validation_problem
from app.events import service as events_service
from app.guard.deployment_policy import effective_policy
from app.guard.verdict import GuardVerdict
from app.ops.nul_guard import MESSAGE as NUL_MESSAGE
from app.runtime import Runtime
from app.settings import Settings
from app.ui import campaign_view, check_rows, forms, opens_chart
from app.ui.deps import Operator, Reader, Watcher, Writer
from app.ui.render import page, see_other

router = APIRouter(prefix="/ui")

PAGE_SIZE = 25
ACTIONS: dict[str, Scope] = {
    "start": Scope.campaigns_operate,
    "pause": Scope.campaigns_operate,
    "resume": Scope.campaigns_operate,
    "cancel": Scope.campaigns_operate,
    "kill": Scope.kill,
}


def page_size_max(request: Request) -> int:
    return int(request.app.state.runtime.settings.page_size_max)


async def read_form(request: Request) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The posted fields; a NUL character (which no text column can hold) is refused by name."""
    form = await request.form()
    single: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    refused = [
        FieldError(f"form.{name}", NUL_MESSAGE)
        for name, value in form.multi_items()
        if isinstance(value, str) and "\x00" in value
    ]
    if refused:
        raise validation_problem(refused)
    for name, value in form.multi_items():
        if isinstance(value, str):
            single[name] = value
            lists.setdefault(name, []).append(value)
    return single, lists


def _enum(kind: type[Any], text: str | None) -> Any:
    try:
        return kind(text) if text else None
    except ValueError:
        return None


# A wave's counts of rows that have their outcome.
FINISHED = ("sent", "failed", "invalid", "cancelled", "blocked", "expired", "capped")


def totals(view: CampaignOut) -> dict[str, int]:
    """Counts over every wave, and how much of what was released has an outcome."""
    sums = {
        name: sum(getattr(w, name) for w in view.waves)
        for name in (*FINISHED, "targeted", "queued")
    }
    sums["done"] = sum(sums[n] for n in FINISHED)
    sums["planned"] = max([w.target_count or 0 for w in view.waves] + [sums["targeted"]], default=0)
    return sums


def _row(view: CampaignOut) -> dict[str, Any]:
    sums = totals(view)
    return {"c": view, "t": sums, "reach": campaign_view.reach(view, sums["done"])}


# ---------------------------------------------------------------- list
@router.get("/campaigns", response_class=HTMLResponse, include_in_schema=False)
async def campaigns_list(
    request: Request,
    session: SessionDep,
    op: Watcher,
    status: str | None = None,
    kind: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    running_only = not op.can(Scope.campaigns_read)
    if running_only:
        # A key that may only stop campaigns sees those there is something to stop in.
        status = CampaignStatus.running.value
    items, next_cursor = await service.page_campaigns(
        session,
        limit=PAGE_SIZE,
        cursor=cursor or None,
        status=_enum(CampaignStatus, status),
        kind=_enum(CampaignKind, kind),
    )
    rows = []
    for item in items:
        rows.append(_row(await service.view(session, await service.get(session, item.id))))
    return page(
        request,
        "campaigns.html",
        op=op,
        rows=rows,
        next_cursor=next_cursor,
        status=status or "",
        kind=kind or "",
        statuses=[s.value for s in CampaignStatus],
        running_only=running_only,
    )


# ---------------------------------------------------------------- new campaign
async def _form_page(
    request: Request,
    session: AsyncSession,
    op: Operator,
    form: forms.CampaignForm,
    errors: dict[str, list[str]] | None = None,
    status_code: int = 200,
    refused: GuardVerdict | None = None,
) -> HTMLResponse:
    """The form; after the guard refused it, `refused` is its verdict, shown once: each
    finding beside its input, or in the verdict when no input carries it."""
    segments = await audiences.list_segments(session, limit=page_size_max(request))
    beside: dict[str, list[str]] = {}
    rest: list[str] = []
    if refused is not None:
        placed = forms.place(((f.field, f.message) for f in refused.findings), form.wave_rows())
        beside, rest = forms.split_guard(placed, len(form.waves))
    return page(
        request,
        "new_campaign.html",
        status_code=status_code,
        op=op,
        form=form,
        errors=errors or {},
        refused=refused,
        guard_beside=beside,
        guard_rest=rest,
        policy=effective_policy(request.app.state.runtime.settings),
        deployment_quiet=request.app.state.runtime.settings.quiet_window,
        segments=segments,
        presets=forms.PRESETS,
        rule_fields=forms.RULE_FIELDS,
        rule_ops=forms.RULE_OPS,
        max_checks=MAX_CHECKS,
        sources=check_rows.SOURCES,
        builtins=check_rows.BUILTINS,
        signs=check_rows.SIGNS,
    )


@router.get("/campaigns/new", response_class=HTMLResponse, include_in_schema=False)
async def new_campaign_form(request: Request, session: SessionDep, op: Writer) -> HTMLResponse:
    return await _form_page(request, session, op, forms.CampaignForm())


def problem_errors(
    problem: Problem, wave_rows: Sequence[int], check_rows: Sequence[int] = ()
) -> dict[str, list[str]]:
    placed = forms.place(
        ((e["field"], e["message"]) for e in problem.errors), wave_rows, check_rows
    )
    if not problem.errors:
        placed.setdefault(forms.GENERAL, []).append(problem.detail)
    return placed


GUARD_REFUSED = "https://wavecast.dev/problems/guard-refused"


def guard_refusal(problem: Problem) -> GuardVerdict | None:
    """The guard's verdict when `problem` is its refusal (`app.guard.assessment`)."""
    if problem.type != GUARD_REFUSED or "guard" not in problem.extra:
        return None
    return GuardVerdict.model_validate(problem.extra["guard"])


# The route a form's submission ids are remembered under (`app.idempotency`).
_FORM_ROUTE = "/ui/campaigns/new"


async def _created_by(runtime: Runtime, op: Operator, submission: str) -> uuid.UUID | None:
    """The campaign an earlier submit of this form created, if one did."""
    async with unit_of_work(runtime.sessionmaker) as session:
        earlier = await idempotency.answered(session, op.principal, _FORM_ROUTE, submission)
    return None if earlier is None else uuid.UUID(earlier.response["id"])


@router.post("/campaigns/new", include_in_schema=False)
async def create_campaign(request: Request, runtime: RuntimeDep, op: Writer) -> Response:
    single, lists = await read_form(request)
    form = forms.CampaignForm.from_form(single, lists)
    submission = form.submission
    if submission and (earlier := await _created_by(runtime, op, submission)) is not None:
        return see_other(f"/ui/campaigns/{earlier}")
    body, errors = form.validate()
    if body is not None and (timing := _priority_refused(op, body)):
        body, errors = None, timing
    status_code = 422
    refused: GuardVerdict | None = None
    if body is not None:
        try:
            async with unit_of_work(runtime.sessionmaker) as session:
                campaign = await service.create(session, runtime.settings, op.principal, body)
                campaign_id = campaign.id
                if submission:
                    idempotency.remember(
                        session,
                        op.principal,
                        _FORM_ROUTE,
                        submission,
                        body.model_dump(mode="json"),
                        303,
                        {"id": str(campaign_id)},
                    )
            return see_other(f"/ui/campaigns/{campaign_id}")
        except IntegrityError:
            # The same form submitted twice at once: the other submit's campaign was
            # committed with its id first, and this one's is rolled back with its own.
            earlier = await _created_by(runtime, op, submission) if submission else None
            if earlier is None:
                raise
            return see_other(f"/ui/campaigns/{earlier}")
        except Problem as problem:
            status_code = problem.status
            refused = guard_refusal(problem)
            # The guard's findings are its verdict's to show (once); not input errors too.
            errors = (
                {}
                if refused is not None
                else problem_errors(problem, form.wave_rows(), form.check_rows())
            )
    async with unit_of_work(runtime.sessionmaker) as session:
        return await _form_page(request, session, op, form, errors, status_code, refused)


def _priority_refused(op: Operator, body: CampaignCreate) -> dict[str, list[str]]:
    """The critical priority without the scope it needs, said beside the priority (the
    service refuses it as the whole request's 403)."""
    if body.priority == CampaignPriority.critical and not op.can(Scope.campaigns_critical):
        return {
            "priority": [
                f"\"critical\" needs the '{Scope.campaigns_critical.value}' scope, which your "
                "API key lacks"
            ]
        }
    return {}


def _timing_errors(settings: Settings, op: Operator, body: CampaignCreate) -> dict[str, list[str]]:
    """What creating the campaign would refuse of its timing, placed by form input."""
    refused = _priority_refused(op, body)
    if refused:
        return refused
    try:
        service.check_draft_timing(settings, op.principal, body)
    except Problem as problem:
        return problem_errors(problem, [])
    return {}


def _durations(preview: dict[str, Any], per_second: int) -> list[float]:
    return [round(w["new_devices"] / per_second, 1) for w in preview["waves"]]


@router.post("/api/campaigns/preview", include_in_schema=False)
async def preview_campaign(request: Request, runtime: RuntimeDep, op: Writer) -> JSONResponse:
    """Audience size, devices and estimated duration per wave, payload bytes and the guard's
    verdict for the form as typed; stores nothing. Errors come back placed by form input."""
    single, lists = await read_form(request)
    form = forms.CampaignForm.from_form(single, lists)
    if not form.name.strip():
        form.name = "(preview)"  # the name does not change the verdict; let the rest be judged
    body, errors = form.validate()
    if body is None:
        return JSONResponse({"ok": False, "errors": errors})
    try:
        async with unit_of_work(runtime.sessionmaker) as session:
            result = (await service.preview(session, runtime.settings, body)).model_dump(
                mode="json"
            )
    except Problem as problem:
        return JSONResponse(
            {"ok": False, "errors": problem_errors(problem, form.wave_rows(), form.check_rows())}
        )
    per_second = body.throttle.per_second if body.throttle else service.DEFAULT_THROTTLE
    result["durations"] = _durations(result, per_second)
    result["wave_rows"] = form.wave_rows()
    placed = forms.place(
        ((f["field"], f["message"]) for f in result["guard"]["findings"]), form.wave_rows()
    )
    result["guard_fields"] = placed
    result["guard_beside"], result["guard_rest"] = forms.split_guard(placed, len(form.waves))
    # Refused timing is said beside its input while the rest of the preview still shows.
    timing_errors = _timing_errors(runtime.settings, op, body)
    return JSONResponse({"ok": True, "preview": result, "errors": timing_errors})


@router.post("/api/audience", include_in_schema=False)
async def audience_size(request: Request, runtime: RuntimeDep, op: Reader) -> JSONResponse:
    single, lists = await read_form(request)
    form = forms.CampaignForm.from_form(single, lists)
    raw, errors = form.to_body()
    if "audience" in errors:
        return JSONResponse({"ok": False, "errors": {"audience": errors["audience"]}})
    audience = raw["audience"]
    try:
        segment_id = uuid.UUID(audience["segment_id"]) if audience.get("segment_id") else None
        async with unit_of_work(runtime.sessionmaker) as session:
            rules, _ = await audiences.resolve(
                session, segment_id=segment_id, rules=audience.get("rules")
            )
            count, by_platform = await audiences.estimate(session, rules)
    except ValueError:
        return JSONResponse({"ok": False, "errors": {"audience": ["not a segment id"]}})
    except Problem as problem:
        return JSONResponse({"ok": False, "errors": problem_errors(problem, [])})
    return JSONResponse({"ok": True, "count": count, "by_platform": by_platform})


# ---------------------------------------------------------------- campaign page
async def _campaign_context(session: AsyncSession, campaign_id: uuid.UUID) -> dict[str, Any]:
    view = await service.view(session, await service.get(session, campaign_id))
    events = await audit_repo.list_events(
        session, limit=100, subject_type="campaign", subject_id=str(campaign_id)
    )
    row = _row(view)
    since, until, opens = await events_service.opens_series(
        session, campaign_id, now=utcnow(), span=opens_chart.SPAN
    )
    return {
        **row,
        "chart": opens_chart.opens_chart(since, until, opens),
        "wave_states": [campaign_view.wave_state(view.status, w.status) for w in view.waves],
        "events": events,
        "terminal": is_terminal(view.status),
        "available": available_actions(view.status),
    }


async def _plan_context(
    session: AsyncSession, settings: Settings, campaign: Campaign
) -> dict[str, Any]:
    """What the campaign sends and to whom, as it stands now (the part of the page that is
    not refreshed while it sends): the text per locale and platform, the audience and its
    size, each wave's size, the guard's verdict here and the override with who gave it."""
    content = Content.model_validate(campaign.content)
    segment = (
        await audiences.get_segment(session, campaign.segment_id)
        if campaign.segment_id is not None
        else None
    )
    override_events = await audit_repo.list_events(
        session,
        limit=1,
        action="guard.overridden",
        subject_type="campaign",
        subject_id=str(campaign.id),
    )
    plan = await service.plan(session, settings, campaign)
    return {
        "plan": plan,
        "quiet_text": campaign_view.quiet_hours_text(
            campaign.priority, campaign.quiet_hours, plan.quiet_hours
        ),
        "texts": campaign_view.device_texts(content),
        "options": campaign_view.platform_options(content),
        "content": content,
        "segment": segment,
        "rules_text": campaign_view.rules_text(campaign.audience_rules),
        "override": {
            "reason": campaign.guard_override_reason,
            "by": campaign.guard_override_by,
            "event": override_events[0] if override_events else None,
        },
        "policy": effective_policy(settings),
        "default_zone": settings.default_timezone,
        "default_checks": [c.stored() for c in settings.default_checks],
        "source_text": check_rows.source_text,
        "condition_text": check_rows.condition_text,
    }


async def _full_context(
    session: AsyncSession, settings: Settings, campaign_id: uuid.UUID
) -> dict[str, Any]:
    context = await _campaign_context(session, campaign_id)
    campaign = await service.get(session, campaign_id)
    return {
        **context,
        **(await _plan_context(session, settings, campaign)),
        "approval": await approval.status(session, settings, campaign),
    }


def available_actions(status: CampaignStatus) -> list[str]:
    """The actions the state machine allows from `status` (the form offers only those)."""
    return [name for name in ACTIONS if (status, CampaignAction(name)) in TRANSITIONS]


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse, include_in_schema=False)
async def campaign_page(
    request: Request,
    campaign_id: uuid.UUID,
    session: SessionDep,
    runtime: RuntimeDep,
    op: Watcher,
) -> HTMLResponse:
    context = await _full_context(session, runtime.settings, campaign_id)
    return page(request, "campaign.html", op=op, action_error=None, **context)


@router.get("/campaigns/{campaign_id}/live", response_class=HTMLResponse, include_in_schema=False)
async def campaign_live(
    request: Request, campaign_id: uuid.UUID, session: SessionDep, op: Watcher
) -> HTMLResponse:
    """The part of the campaign page that changes while it sends (fetched by ui.js)."""
    context = await _campaign_context(session, campaign_id)
    return page(request, "_campaign_live.html", op=op, **context)


async def _act(
    runtime: RuntimeDep, op: Operator, campaign_id: uuid.UUID, action: str, reason: str | None
) -> None:
    """The same commands the API runs, so a stop from the form carries the same guarantee."""
    control, principal = Control(runtime.redis), op.principal
    # The API's own checks on a reason (length, characters), raised as ValidationError.
    if action == "kill":
        reason = Reason(reason=reason or "").reason
    else:
        reason = OptionalReason(reason=reason).reason
    async with unit_of_work(runtime.sessionmaker) as session:
        if action == "kill":
            await commands.kill(session, control, principal, campaign_id, reason=reason or "")
        elif action == "start":
            await commands.start(
                session,
                control,
                runtime.settings,
                principal,
                campaign_id,
                override_reason=None,
                reason=reason,
            )
        else:
            command = {
                "pause": commands.pause,
                "resume": commands.resume,
                "cancel": commands.cancel,
            }[action]
            await command(session, control, principal, campaign_id, reason=reason)


@router.post("/campaigns/{campaign_id}/{action}", include_in_schema=False)
async def campaign_action(
    request: Request, campaign_id: uuid.UUID, action: str, runtime: RuntimeDep, op: Watcher
) -> Response:
    """Start, pause, resume, cancel or kill; each needs its confirmation box ticked, and kill
    a reason. The scope each needs is the API's."""
    if action == "approve":
        return await _approve(request, campaign_id, runtime, op)
    scope = ACTIONS.get(action)
    if scope is None:
        raise Problem(404, "Not found", f"there is no campaign action '{action}'")
    if not op.can(scope):
        raise Problem(403, "Forbidden", f"your API key lacks the '{scope.value}' scope needed here")
    single, _ = await read_form(request)
    reason = single.get("reason", "").strip() or None
    error: str | None = None
    status_code = 422
    if single.get("confirm") != "yes":
        error = f"{action}: tick the confirmation box to {action} this campaign"
    elif action == "kill" and reason is None:
        error = "kill: a reason is required"
    else:
        try:
            await _act(runtime, op, campaign_id, action, reason)
        except ValidationError as exc:
            error = "; ".join(f"reason: {e['msg']}" for e in exc.errors())
        except Problem as problem:
            if problem.status in (401, 403, 404):
                raise
            error = f"{action}: {problem.detail}"
            status_code = problem.status
    return await _acted(request, runtime, op, campaign_id, error, status_code)


async def _approve(
    request: Request, campaign_id: uuid.UUID, runtime: Runtime, op: Operator
) -> Response:
    """Approve from the campaign page: the approve command the API and Slack run, with the
    person signed in (channel `ui`), for the campaign as the page showed it (the form
    carries its binding: an edit landing after the page was read is refused)."""
    single, _ = await read_form(request)
    error: str | None = None
    status_code = 422
    if single.get("confirm") != "yes":
        error = "approve: tick the box to say you have read the campaign"
    elif not single.get("expected_binding"):
        error = "approve: the form does not say which version of the campaign you read: reload"
    else:
        try:
            asked = ApproveRequest(
                comment=single.get("comment", "").strip() or None,
                expected_binding=single["expected_binding"],
            )
            async with unit_of_work(runtime.sessionmaker) as session:
                await approval.approve(
                    session,
                    runtime.settings,
                    op.principal,
                    campaign_id,
                    comment=asked.comment,
                    expected_binding=asked.expected_binding,
                )
        except ValidationError as exc:
            error = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        except Problem as problem:
            if problem.status in (401, 404):
                raise
            error = f"approve: {problem.detail}"
            status_code = problem.status
    return await _acted(request, runtime, op, campaign_id, error, status_code)


async def _acted(
    request: Request,
    runtime: Runtime,
    op: Operator,
    campaign_id: uuid.UUID,
    error: str | None,
    status_code: int,
) -> Response:
    """Back to the campaign page after an action: a redirect when it was done, the page
    with the error otherwise."""
    if error is None:
        return see_other(f"/ui/campaigns/{campaign_id}")
    async with unit_of_work(runtime.sessionmaker) as session:
        context = await _full_context(session, runtime.settings, campaign_id)
    return page(
        request, "campaign.html", status_code=status_code, op=op, action_error=error, **context
    )
