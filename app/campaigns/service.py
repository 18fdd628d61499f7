"""Campaigns: creation (validated and guarded), views, edits and audited transitions."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from app import pagination
from app.approval import repository as approval_repo
from app.approval import service as approval
from app.audiences import service as audiences
from app.audit import service as audit
from app.auth.models import Scope
from app.auth.principal import Principal
from app.campaigns import repository
from app.campaigns.models import Campaign, CampaignKind, CampaignPriority, CampaignWave
from app.campaigns.schemas import (
    CampaignCreate,
    CampaignOut,
    CampaignPatch,
    CampaignSummary,
    CheckResultOut,
    Content,
    PreviewOut,
    Rollout,
    WaveOut,
    WavePlan,
    ZoneShare,
)
from app.campaigns.state import (
    CampaignAction,
    CampaignStatus,
    InvalidTransition,
    is_terminal,
    next_status,
)
from app.checks import repository as checks_repo
from app.checks import runner as wave_checks
from app.db.types import utcnow
from app.delivery import ledger
from app.delivery.payloads import PAYLOAD_LIMIT, largest_sizes
from app.delivery.timing_rules import campaign_quiet_hours
from app.errors import FieldError, Problem, not_found, validation_problem
from app.events import service as events_service
from app.guard import assessment as guard
from app.guard.override import ContentJudgement, judge_content, standing_reason
from app.guard.verdict import GuardVerdict
from app.instants import representable_in_utc
from app.killswitch import service as killswitch
from app.rollout.bucketing import campaign_rotation
from app.rollout.planner import WaveSpec, cumulative_target, validate_waves
from app.settings import Settings
from app.timing.schedule import (
    QuietHours,
    deadline,
    due_at,
    next_local_occurrence,
    parse_local_time,
    zone_of,
)

# Every campaign state change, one line each (`log_transition`).
transitions_log = logging.getLogger("wavecast.commands")

DEFAULT_THROTTLE = 100
EDITABLE_WHILE_LIVE = {"throttle", "failure_threshold_percent"}


# ---------------------------------------------------------------- validation
def _wave_specs(rollout: Rollout) -> list[WaveSpec]:
    return [WaveSpec(percent=w.percent, hold_seconds=w.hold_seconds) for w in rollout.waves]


def check_rollout(rollout: Rollout) -> list[WaveSpec]:
    specs = _wave_specs(rollout)
    problems = validate_waves(specs)
    if problems:
        raise validation_problem(
            [
                FieldError(
                    "rollout.waves" if p.index is None else f"rollout.waves[{p.index}].{p.field}",
                    p.message,
                )
                for p in problems
            ],
            title="Invalid rollout",
        )
    return specs


def check_own_checks(settings: Settings, rollout: Rollout) -> None:
    """A campaign's checks run beside the deployment's defaults, by name; one named like a
    default would be ambiguous in every result and pause reason, so it is refused."""
    defaults = {c.name for c in settings.default_checks}
    clashes = [i for i, c in enumerate(rollout.checks) if c.name in defaults]
    if clashes:
        raise validation_problem(
            [
                FieldError(
                    f"rollout.checks[{i}].name",
                    f"{rollout.checks[i].name!r} is a deployment default check "
                    "(WAVECAST_DEFAULT_CHECKS); choose another name",
                )
                for i in clashes
            ],
            title="Invalid rollout",
        )


def check_payload_size(content: Content) -> dict[str, int]:
    sizes = largest_sizes(content)
    errors = [
        FieldError(
            "content",
            f"the {platform} payload is {size} bytes; "
            f"{'APNs' if platform == 'ios' else 'FCM'} accepts at most {PAYLOAD_LIMIT}",
        )
        for platform, size in sizes.items()
        if size > PAYLOAD_LIMIT
    ]
    if errors:
        raise validation_problem(errors, title="Payload too large")
    return sizes


# ---------------------------------------------------------------- create / preview
async def preview(session: AsyncSession, settings: Settings, body: CampaignCreate) -> PreviewOut:
    rules, _ = await audiences.resolve(
        session, segment_id=body.audience.segment_id, rules=body.audience.rules
    )
    specs = check_rollout(body.rollout)
    sizes = check_payload_size(body.content)
    size, by_platform = await audiences.estimate(session, rules)
    verdict = await guard.verdict(
        session,
        settings,
        kind=body.kind,
        content=body.content,
        waves=specs,
        rules=rules,
        override_reason=body.override.reason if body.override else None,
    )
    schedule = await send_schedule(
        session, settings, rules, draft_timing(body), body.content.ttl_seconds
    )
    return PreviewOut(
        valid=True,
        audience_size=size,
        by_platform=by_platform,
        waves=plan_waves(specs, size),
        payload_bytes=sizes,
        guard=verdict,
        **schedule,
    )


def draft_timing(body: CampaignCreate) -> Campaign:
    """The timing fields of a campaign not created yet, on an unsaved row that is never
    added to a session: the rules that read a stored campaign's timing (the quiet hours in
    force, `check_timing`) then read a draft's alike."""
    return Campaign.model_construct(
        priority=body.priority,
        quiet_hours=body.quiet_hours_setting(),
        local_time=body.rollout.local_time,
        start_at=body.rollout.start_at,
        expires_at=body.expires_at,
    )


def check_draft_timing(settings: Settings, principal: Principal, body: CampaignCreate) -> None:
    """`check_timing` on a campaign not created yet (what `create` would refuse of it)."""
    check_timing(settings, principal, draft_timing(body))


# The preview lists this many time zones at most, those sent first; the rest are counted.
SCHEDULE_LIMIT = 500


async def send_schedule(
    session: AsyncSession,
    settings: Settings,
    rules: dict[str, Any],
    campaign: Campaign,
    ttl_seconds: int,
) -> dict[str, Any]:
    """The preview's timing fields: when each time zone's devices would first be due if the
    first wave were released now, by the rules the engine and the sender apply then."""
    now = utcnow()
    quiet = campaign_quiet_hours(settings, campaign)
    # The campaign-wide part of the deadline; each zone's time to live counts from its own
    # local instant (as the sender counts it).
    limit = deadline(
        created_at=now,
        ttl_seconds=None,
        expires_at=campaign.expires_at,
        max_lifetime_seconds=settings.max_message_lifetime_seconds,
    )
    shares, more_zones, more_devices = zone_schedule(
        await audiences.count_by_timezone(session, rules),
        now=now,
        default_zone=settings.default_zone,
        local_time=campaign.local_time,
        quiet=quiet,
        deadline_at=limit,
        ttl_seconds=ttl_seconds,
    )
    return {
        "local_time": campaign.local_time,
        "quiet_hours": str(quiet) if quiet is not None else None,
        "schedule": shares,
        "schedule_more_zones": more_zones,
        "schedule_more_devices": more_devices,
    }


def zone_schedule(
    counts: Mapping[str | None, int],
    *,
    now: datetime,
    default_zone: ZoneInfo,
    local_time: str | None,
    quiet: QuietHours | None,
    deadline_at: datetime | None,
    ttl_seconds: int | None = None,
    limit: int = SCHEDULE_LIMIT,
) -> tuple[list[ZoneShare], int, int]:
    """Device counts by stored zone name (None: none) as one share per zone the sender
    uses, earliest first send first (then by name): the first `limit`, and how many zones
    and devices come after them.

    A device without a zone, or with a name this server's time zone database does not
    know, is sent by the default zone (`zone_of`) and counted in its share. Each share's
    first send is `due_at` for a release at `now`: the device's due time as the engine
    computes it, which the sender also never moves out of quiet hours."""
    local = parse_local_time(local_time) if local_time is not None else None
    zones: dict[str, ZoneInfo] = {}
    devices: dict[str, int] = {}
    without: dict[str, int] = {}
    for name, count in counts.items():
        zone = zone_of(name, default_zone)
        key = str(zone)
        zones[key] = zone
        devices[key] = devices.get(key, 0) + count
        if name != key:
            without[key] = without.get(key, 0) + count
    shares = []
    for key, zone in zones.items():
        named = now if local is None else next_local_occurrence(local, zone, now)
        first = due_at(released_at=now, zone=zone, local_time=local, quiet=quiet)
        shares.append(
            ZoneShare(
                timezone=key,
                devices=devices[key],
                without_zone=without.get(key, 0),
                first_send_at=first,
                local_time_there=first.astimezone(zone).strftime("%H:%M"),
                after_quiet_hours=first != named,
                past_deadline=_past(first, named, deadline_at, ttl_seconds),
            )
        )
    shares.sort(key=lambda share: (share.first_send_at, share.timezone))
    rest = shares[limit:]
    return shares[:limit], len(rest), sum(share.devices for share in rest)


def _past(
    first: datetime, named: datetime, campaign_limit: datetime | None, ttl_seconds: int | None
) -> bool:
    """Whether a zone's first send would come after its deadline: the campaign's, or its
    time to live counted from the zone's local instant."""
    limit = deadline(
        created_at=named,
        ttl_seconds=ttl_seconds or None,
        expires_at=campaign_limit,
        max_lifetime_seconds=None,
    )
    return limit is not None and first >= limit


def plan_waves(specs: Sequence[WaveSpec], audience_size: int) -> list[WavePlan]:
    """Each wave's size for an audience of `audience_size`: wave k covers the first
    ceil(p_k·N) devices of the campaign's order (the planner's arithmetic)."""
    plans = []
    previous = 0
    for index, spec in enumerate(specs):
        cumulative = cumulative_target(spec.percent, audience_size)
        plans.append(
            WavePlan(
                index=index,
                percent=spec.percent,
                hold_seconds=spec.hold_seconds,
                cumulative_devices=cumulative,
                new_devices=cumulative - previous,
            )
        )
        previous = cumulative
    return plans


async def plan(session: AsyncSession, settings: Settings, campaign: Campaign) -> PreviewOut:
    """What a stored campaign would send, and to whom, if its waves were released now: the
    preview's answer for the campaign as the database holds it. Stores and audits nothing
    (an override that no longer covers the content simply counts as none here)."""
    specs = [WaveSpec(w.percent, w.hold_seconds) for w in await waves(session, campaign.id)]
    content = Content.model_validate(campaign.content)
    size, by_platform = await audiences.estimate(session, campaign.audience_rules)
    standing = standing_reason(
        campaign.guard_override_reason,
        campaign.guard_override_hash,
        judge_content(campaign.content),
    )
    verdict = await guard.verdict(
        session,
        settings,
        kind=CampaignKind(campaign.kind),
        content=content,
        waves=specs,
        rules=campaign.audience_rules,
        override_reason=standing,
    )
    schedule = await send_schedule(
        session, settings, campaign.audience_rules, campaign, content.ttl_seconds
    )
    return PreviewOut(
        valid=True,
        audience_size=size,
        by_platform=by_platform,
        waves=plan_waves(specs, size),
        payload_bytes=largest_sizes(content),
        guard=verdict,
        **schedule,
    )


async def create(
    session: AsyncSession, settings: Settings, principal: Principal, body: CampaignCreate
) -> Campaign:
    guard.require_override_right(principal, body.override)
    rules, segment_id = await audiences.resolve(
        session, segment_id=body.audience.segment_id, rules=body.audience.rules
    )
    specs = check_rollout(body.rollout)
    check_own_checks(settings, body.rollout)
    check_payload_size(body.content)
    override = body.override.reason if body.override else None
    verdict = await guard.verdict(
        session,
        settings,
        kind=body.kind,
        content=body.content,
        waves=specs,
        rules=rules,
        override_reason=override,
    )
    guard.refuse_unless_allowed(session, principal, verdict, subject_id=None, attempted="create")
    campaign_id = uuid.uuid4()
    content = body.content.model_dump(mode="json")
    campaign = Campaign(
        id=campaign_id,
        name=body.name,
        kind=body.kind,
        content=content,
        segment_id=segment_id,
        audience_rules=rules,
        start_at=body.rollout.start_at,
        throttle_per_second=body.throttle.per_second if body.throttle else DEFAULT_THROTTLE,
        max_opens_per_second=body.throttle.max_opens_per_second if body.throttle else None,
        failure_threshold_percent=(
            body.failure_threshold_percent
            if body.failure_threshold_percent is not None
            else settings.failure_threshold_percent
        ),
        rotation=campaign_rotation(campaign_id),
        created_by=principal.actor,
        created_by_person_id=principal.person_id,
        local_time=body.rollout.local_time,
        checks=[c.stored() for c in body.rollout.checks],
        quiet_hours=body.quiet_hours_setting(),
        expires_at=body.expires_at,
        priority=body.priority,
    )
    check_timing(settings, principal, campaign)
    if override and verdict.overridden:
        _bind_override(campaign, override, principal.actor, judge_content(content))
    session.add(campaign)
    _replace_waves(session, campaign.id, specs)
    audit.record(
        session,
        principal,
        "campaign.created",
        subject_type="campaign",
        subject_id=campaign.id,
        after=_snapshot(campaign, specs),
    )
    _audit_guard(session, principal, campaign, verdict, override)
    await session.flush()
    return campaign


def _audit_guard(
    session: AsyncSession,
    principal: Principal,
    campaign: Campaign,
    verdict: GuardVerdict,
    override: str | None,
) -> None:
    if verdict.overridden:
        audit.record(
            session,
            principal,
            "guard.overridden",
            subject_type="campaign",
            subject_id=campaign.id,
            reason=override,
            after={"findings": [f.model_dump(mode="json") for f in verdict.findings]},
        )


def _bind_override(
    campaign: Campaign, reason: str | None, by: str | None, judgement: ContentJudgement | None
) -> None:
    """Store an override with what it approved, or (all None) clear it."""
    campaign.guard_override_reason = reason
    campaign.guard_override_by = by
    campaign.guard_override_hash = judgement.binding if judgement is not None else None


def _standing_override(
    session: AsyncSession, principal: Principal, campaign: Campaign, judgement: ContentJudgement
) -> str | None:
    """The campaign's override if it still covers its content as judged now, else None.

    An override that no longer covers it (the content or the lint's findings changed since,
    or it was stored without a binding) is voided here, cleared and audited, so no later
    step, nor the worker, can lean on it: an override approves words, not a campaign.
    """
    standing = standing_reason(
        campaign.guard_override_reason, campaign.guard_override_hash, judgement
    )
    if campaign.guard_override_reason is not None and standing is None:
        audit.record(
            session,
            principal,
            "guard.override_voided",
            subject_type="campaign",
            subject_id=campaign.id,
            reason=(
                "override voided: the content, or the guard's findings on it, changed since "
                "the override was given"
            ),
            before={"reason": campaign.guard_override_reason, "by": campaign.guard_override_by},
            after={"findings": [f.model_dump(mode="json") for f in judgement.findings]},
        )
        _bind_override(campaign, None, None, None)
    return standing


def _replace_waves(
    session: AsyncSession, campaign_id: uuid.UUID, specs: Sequence[WaveSpec]
) -> None:
    for index, spec in enumerate(specs):
        session.add(
            CampaignWave(
                campaign_id=campaign_id,
                index=index,
                percent=spec.percent,
                hold_seconds=spec.hold_seconds,
            )
        )


def _snapshot(campaign: Campaign, specs: Sequence[WaveSpec] | None = None) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "name": campaign.name,
        "kind": str(campaign.kind),
        "status": str(campaign.status),
        "content": campaign.content,
        "audience_rules": campaign.audience_rules,
        "segment_id": str(campaign.segment_id) if campaign.segment_id else None,
        "start_at": campaign.start_at.isoformat() if campaign.start_at else None,
        "throttle_per_second": campaign.throttle_per_second,
        "max_opens_per_second": campaign.max_opens_per_second,
        "failure_threshold_percent": str(campaign.failure_threshold_percent),
        "local_time": campaign.local_time,
        "checks": campaign.checks or [],
        "quiet_hours": campaign.quiet_hours,
        "expires_at": campaign.expires_at.isoformat() if campaign.expires_at else None,
        "priority": str(campaign.priority),
    }
    if specs is not None:
        snap["waves"] = [{"percent": str(s.percent), "hold_seconds": s.hold_seconds} for s in specs]
    return snap


def check_timing(settings: Settings, principal: Principal, campaign: Campaign) -> None:
    """The timing rules a campaign's own settings must keep (422 naming each problem): only
    a key with campaigns:critical sets the critical priority; only a critical campaign turns
    quiet hours off; a deadline lies ahead, and within the deployment's longest lifetime of
    the campaign's start."""
    problems: list[FieldError] = []
    critical = campaign.priority == CampaignPriority.critical
    if critical and not principal.has(Scope.campaigns_critical):
        raise Problem(
            403,
            "Forbidden",
            'priority "critical" (exempt from quiet hours and frequency caps) needs the '
            "'campaigns:critical' scope",
        )
    if campaign.quiet_hours == "off" and not critical:
        problems.append(
            FieldError(
                "quiet_hours",
                'null (no quiet hours) is allowed only with priority "critical"',
            )
        )
    now = utcnow()
    if campaign.expires_at is not None:
        start = max(campaign.start_at or now, now)
        if campaign.expires_at <= start:
            problems.append(
                FieldError(
                    "expires_at",
                    f"the deadline {campaign.expires_at.isoformat()} is not after the "
                    f"campaign's start ({start.isoformat(timespec='seconds')}): nothing could "
                    "be sent",
                )
            )
        lifetime = settings.max_message_lifetime_seconds
        if lifetime is not None and campaign.expires_at > start + timedelta(seconds=lifetime):
            problems.append(
                FieldError(
                    "expires_at",
                    f"the deadline is more than WAVECAST_MAX_MESSAGE_LIFETIME ({lifetime} s) "
                    "after the campaign's start",
                )
            )
    if problems:
        raise validation_problem(problems, title="Invalid timing")


# ---------------------------------------------------------------- reads
async def get(session: AsyncSession, campaign_id: uuid.UUID, *, lock: bool = False) -> Campaign:
    campaign = await repository.get(session, campaign_id, lock=lock)
    if campaign is None:
        raise not_found("Campaign", campaign_id)
    return campaign


waves = repository.waves


def hold_until(wave: CampaignWave) -> datetime | None:
    return _hold_end(wave.finished_at, wave.hold_seconds)


def _hold_end(finished_at: datetime | None, hold_seconds: int) -> datetime | None:
    return None if finished_at is None else finished_at + timedelta(seconds=hold_seconds)


def wave_figures(
    counts: Mapping[str, int], received: int, opened: int, converted: int
) -> dict[str, Any]:
    """A wave's figures as the view shows them, from its ledger rows per status and its
    engagement reports."""
    sent = counts.get("sent", 0)
    return {
        "targeted": sum(counts.values()),
        "queued": counts.get("queued", 0),
        "sending": counts.get("sending", 0),
        "retrying": counts.get("retrying", 0),
        "sent": sent,
        "failed": counts.get("failed", 0),
        "invalid": counts.get("invalid_token", 0),
        "cancelled": counts.get("cancelled", 0),
        "blocked": counts.get("blocked", 0),
        "expired": counts.get("expired", 0),
        "capped": counts.get("capped", 0),
        "received": received,
        "opened": opened,
        "converted": converted,
        "open_rate": events_service.open_rate(opened, sent),
    }


def _next_wave_at(
    status: CampaignStatus,
    current: int,
    starts: datetime | None,
    holds: Sequence[datetime | None],
) -> datetime | None:
    """When the engine may release the next wave: `starts` (the start time, or when it
    started) before the first; the current wave's hold end while another follows."""
    if status not in (CampaignStatus.running, CampaignStatus.scheduled):
        return None
    if current < 0:
        return starts
    return holds[current] if current + 1 < len(holds) else None


async def view(session: AsyncSession, campaign: Campaign) -> CampaignOut:
    """The campaign as the API shows it, read through the ORM in the caller's session (what
    an edit or a transition answers, with its own changes). `read_view` answers the same for
    a campaign read by id."""
    wave_rows = await waves(session, campaign.id)
    counts = await ledger.counts_by_wave(session, campaign.id)
    engagement = await events_service.by_wave(session, campaign.id, timings=False)
    out_waves = []
    for w in wave_rows:
        e = engagement.get(w.index, events_service.WaveFigures())
        out_waves.append(
            WaveOut(
                index=w.index,
                percent=w.percent,
                hold_seconds=w.hold_seconds,
                status=w.status,
                audience_size=w.audience_size,
                target_count=w.target_count,
                **wave_figures(counts.get(w.index, {}), e.received, e.opened, e.converted),
                started_at=w.released_at,
                finished_at=w.finished_at,
                hold_until=hold_until(w),
            )
        )
    current = campaign.current_wave
    next_wave_at = _next_wave_at(
        campaign.status,
        current,
        campaign.start_at or campaign.started_at,
        [hold_until(w) for w in wave_rows],
    )
    results = await checks_repo.latest(session, campaign.id, current) if current >= 0 else []
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        kind=campaign.kind,
        status=campaign.status,
        status_reason=campaign.status_reason,
        content=campaign.content,
        audience={"segment_id": campaign.segment_id, "rules": campaign.audience_rules},
        start_at=campaign.start_at,
        throttle=throttle_view(campaign),
        failure_threshold_percent=campaign.failure_threshold_percent,
        current_wave=current if current >= 0 else None,
        next_wave_at=next_wave_at,
        waves=out_waves,
        guard_override_reason=campaign.guard_override_reason,
        local_time=campaign.local_time,
        checks=campaign.checks or [],
        check_results=[
            CheckResultOut(
                name=r.check_name,
                wave=r.wave,
                result=r.result,
                value=r.value,
                detail=r.detail,
                observed_at=r.observed_at,
            )
            for r in results
        ],
        quiet_hours=campaign.quiet_hours,
        expires_at=campaign.expires_at,
        priority=campaign.priority,
        created_by=campaign.created_by,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
    )


async def read_view(connection: AsyncConnection, campaign_id: uuid.UUID) -> bytes:
    """`view` of the campaign `campaign_id` as JSON (404 when there is none): one read
    (`repository.read_view`), built straight into the answer.

    The answer is built as plain data, in `CampaignOut`'s field order, and serialised by
    pydantic-core, the serialiser the response model's fields use: every value comes from the
    database with the type its field declares (datetimes aware UTC, numerics as Decimal), so
    building and validating models again would only spend time. The JSON is the same as
    `view`'s, field for field (tests/campaigns/test_campaign_read.py holds the two side by
    side)."""
    read = await repository.read_view(connection, campaign_id)
    if read is None:
        raise not_found("Campaign", campaign_id)
    c = read.campaign
    no_engagement = (0, 0, 0)
    out_waves = []
    holds = []
    for index, percent, hold_seconds, status, size, target, released, finished in read.waves:
        until = _hold_end(finished, hold_seconds)
        holds.append(until)
        out_waves.append(
            {
                "index": index,
                "percent": percent,
                "hold_seconds": hold_seconds,
                "status": status,
                "audience_size": size,
                "target_count": target,
                **wave_figures(
                    read.counts.get(index, {}), *read.engagement.get(index, no_engagement)
                ),
                "started_at": released,
                "finished_at": finished,
                "hold_until": until,
            }
        )
    status = CampaignStatus(c["status"])
    current: int = c["current_wave"]
    return to_json(
        {
            "id": c["id"],
            "name": c["name"],
            "kind": c["kind"],
            "status": status,
            "status_reason": c["status_reason"],
            "content": c["content"],
            "audience": {"segment_id": c["segment_id"], "rules": c["audience_rules"]},
            "start_at": c["start_at"],
            "throttle": _throttle(
                c["throttle_per_second"],
                c["max_opens_per_second"],
                c["effective_per_second"],
                c["effective_reason"],
            ),
            "failure_threshold_percent": c["failure_threshold_percent"],
            "current_wave": current if current >= 0 else None,
            "next_wave_at": _next_wave_at(status, current, c["start_at"] or c["started_at"], holds),
            "waves": out_waves,
            "guard_override_reason": c["guard_override_reason"],
            "local_time": c["local_time"],
            "checks": c["checks"] or [],
            "check_results": [
                {
                    "name": name,
                    "wave": wave,
                    "result": result,
                    "value": value,
                    "detail": detail,
                    "observed_at": at,
                }
                for name, wave, result, value, detail, at in read.check_results
            ],
            "quiet_hours": c["quiet_hours"],
            "expires_at": c["expires_at"],
            "priority": c["priority"],
            "created_by": c["created_by"],
            "created_at": c["created_at"],
            "updated_at": c["updated_at"],
            "started_at": c["started_at"],
            "finished_at": c["finished_at"],
        }
    )


async def page_campaigns(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    status: CampaignStatus | None,
    kind: CampaignKind | None,
) -> tuple[list[CampaignSummary], str | None]:
    """One page of campaigns, newest first, and the cursor of the next (None at the end).
    The cursor carries `created_at` and the id, so equal stamps never repeat or skip an item;
    the API and the form page through the same cursors."""
    before, before_id = None, None
    if cursor is not None:
        try:
            stamp, _space, ident = pagination.decode_text(cursor).partition(" ")
            before, before_id = datetime.fromisoformat(stamp), uuid.UUID(ident)
            # The cursors this service writes carry an offset and a stamp UTC holds.
            if before.tzinfo is None:
                raise ValueError("no offset")
            representable_in_utc(before)
        except ValueError:
            raise pagination.bad_cursor() from None
    items = await list_campaigns(
        session, limit=limit + 1, before=before, before_id=before_id, status=status, kind=kind
    )
    return pagination.page(items, limit, lambda c: f"{c.created_at.isoformat()} {c.id}")


async def list_campaigns(
    session: AsyncSession,
    *,
    limit: int,
    before: datetime | None,
    status: CampaignStatus | None,
    kind: CampaignKind | None,
    before_id: uuid.UUID | None = None,
) -> list[CampaignSummary]:
    """Newest first. The id breaks ties, so equal `created_at`s never repeat or skip an item."""
    campaigns = await repository.newest(
        session, limit=limit, before=before, before_id=before_id, status=status, kind=kind
    )
    wave_counts = await repository.wave_counts(session, [c.id for c in campaigns])
    return [
        CampaignSummary(
            id=c.id,
            name=c.name,
            kind=c.kind,
            status=c.status,
            current_wave=c.current_wave if c.current_wave >= 0 else None,
            waves=wave_counts.get(c.id, 0),
            created_at=c.created_at,
            started_at=c.started_at,
        )
        for c in campaigns
    ]


# ---------------------------------------------------------------- edits
async def patch(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    campaign_id: uuid.UUID,
    body: CampaignPatch,
) -> Campaign:
    campaign = await get(session, campaign_id, lock=True)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return campaign
    if campaign.status != CampaignStatus.draft:
        frozen = set(changes) - EDITABLE_WHILE_LIVE
        if frozen or is_terminal(CampaignStatus(campaign.status)):
            raise Problem(
                409,
                "Conflict",
                (
                    f"a {campaign.status} campaign cannot change any more"
                    if is_terminal(CampaignStatus(campaign.status))
                    else f"a {campaign.status} campaign can change only its throttle and "
                    f"failure threshold; {', '.join(sorted(frozen))} cannot change now"
                ),
                errors=[
                    FieldError(name, "not editable after the campaign left draft")
                    for name in sorted(frozen)
                ],
            )
        await _refuse_looser_than_approved(session, campaign, body)
    guard.require_override_right(principal, body.override)
    before = _snapshot(campaign)
    if body.name is not None:
        campaign.name = body.name
    if body.throttle is not None:
        campaign.throttle_per_second = body.throttle.per_second
        budget = body.throttle.max_opens_per_second
        # Left out, the budget stays as it is; null removes it. A new budget starts from the
        # budget itself until the engine's next estimate.
        if "max_opens_per_second" in body.throttle.model_fields_set and (
            budget != campaign.max_opens_per_second
        ):
            campaign.max_opens_per_second = budget
            campaign.effective_per_second = None
            campaign.effective_reason = None
    if body.failure_threshold_percent is not None:
        campaign.failure_threshold_percent = body.failure_threshold_percent
    content = Content.model_validate(campaign.content) if body.content is None else body.content
    if body.content is not None:
        check_payload_size(body.content)
        campaign.content = body.content.model_dump(mode="json")
    if body.audience is not None:
        campaign.audience_rules, campaign.segment_id = await audiences.resolve(
            session, segment_id=body.audience.segment_id, rules=body.audience.rules
        )
    specs = [WaveSpec(w.percent, w.hold_seconds) for w in await waves(session, campaign.id)]
    if body.rollout is not None:
        specs = check_rollout(body.rollout)
        check_own_checks(settings, body.rollout)
        campaign.start_at = body.rollout.start_at
        campaign.local_time = body.rollout.local_time
        campaign.checks = [c.stored() for c in body.rollout.checks]
        for wave in await waves(session, campaign.id):
            await session.delete(wave)
        await session.flush()
        _replace_waves(session, campaign.id, specs)
    if "quiet_hours" in changes:
        campaign.quiet_hours = body.quiet_hours.text() if body.quiet_hours else "off"
    if "expires_at" in changes:
        campaign.expires_at = body.expires_at
    if body.priority is not None:
        campaign.priority = body.priority
    if changes.keys() & {"quiet_hours", "expires_at", "priority", "rollout"}:
        check_timing(settings, principal, campaign)
    if changes.keys() & {"content", "audience", "rollout", "override"}:
        # An edit never inherits an override given for other words: the stored one counts
        # only while it covers the content as edited (an audience or rollout edit leaves
        # it standing, with its author); otherwise it needs a new one, from a key with the
        # right to give it.
        judgement = judge_content(campaign.content)
        standing = _standing_override(session, principal, campaign, judgement)
        new_override = body.override.reason if body.override else None
        verdict = await guard.verdict(
            session,
            settings,
            kind=CampaignKind(campaign.kind),
            content=content,
            waves=specs,
            rules=campaign.audience_rules,
            override_reason=new_override or standing,
        )
        guard.refuse_unless_allowed(
            session, principal, verdict, subject_id=campaign.id, attempted="edit"
        )
        if new_override and verdict.overridden:
            _bind_override(campaign, new_override, principal.actor, judgement)
            _audit_guard(session, principal, campaign, verdict, new_override)
    campaign.updated_at = utcnow()
    # Four-eyes: whoever edits a campaign is its author from now on, and what was approved
    # is not what would be sent any more.
    campaign.edited_by_person_id = principal.person_id
    await approval.void(session, principal, campaign, reason="the campaign was edited")
    session.add(campaign)
    audit.record(
        session,
        principal,
        "campaign.edited",
        subject_type="campaign",
        subject_id=campaign.id,
        before=before,
        after=_snapshot(campaign, specs),
    )
    await session.flush()
    return campaign


@dataclass(frozen=True)
class Limits:
    """A campaign's rate, opens budget (None: none) and failure threshold."""

    rate: int
    budget: int | None
    threshold: Decimal

    @classmethod
    def of(cls, campaign: Campaign) -> Limits:
        return cls(
            campaign.throttle_per_second,
            campaign.max_opens_per_second,
            campaign.failure_threshold_percent,
        )


def looser_limits(bound: Limits, body: CampaignPatch) -> list[FieldError]:
    """The limits an edit sets looser than `bound`: a higher rate, an opens budget removed or
    raised above it (with no budget in `bound`, any budget is no looser), a higher failure
    threshold. A value left out of the edit is not listed."""
    loosened: list[FieldError] = []
    if body.throttle is not None:
        rate = body.throttle.per_second
        if rate > bound.rate:
            loosened.append(
                FieldError(
                    "throttle.per_second", f"raises the rate to {rate}/s, above {bound.rate}/s"
                )
            )
        budget = body.throttle.max_opens_per_second
        if "max_opens_per_second" in body.throttle.model_fields_set and bound.budget is not None:
            if budget is None:
                loosened.append(
                    FieldError(
                        "throttle.max_opens_per_second",
                        f"removes the opens budget, which holds it to {bound.budget} opens/s",
                    )
                )
            elif budget > bound.budget:
                loosened.append(
                    FieldError(
                        "throttle.max_opens_per_second",
                        f"raises the opens budget to {budget} opens/s, above {bound.budget}",
                    )
                )
    threshold = body.failure_threshold_percent
    if threshold is not None and threshold > bound.threshold:
        loosened.append(
            FieldError(
                "failure_threshold_percent",
                f"raises the failure threshold to {threshold.normalize():f} %, above "
                f"{bound.threshold.normalize():f} %",
            )
        )
    return loosened


async def _refuse_looser_than_approved(
    session: AsyncSession, campaign: Campaign, body: CampaignPatch
) -> None:
    """Four-eyes after the start: an approved campaign started under the approval it has,
    which covered its rate, opens budget and failure threshold, and only a draft can be
    approved again. So one person may set a started campaign's limits anywhere up to what
    the approval covered (slow it down, then back up to the approved rate), and anything
    looser is refused (409): it would run beyond what the second person approved. An
    approval given before the limits were kept with it bounds them at their current values.
    A campaign never approved (none was needed) is not bound."""
    # The newest approval, voided or not: for a started campaign, the one it started under.
    approved = await approval_repo.latest(session, campaign.id)
    if approved is None:
        return
    rate, threshold = approved.throttle_per_second, approved.failure_threshold_percent
    bound = (
        Limits(rate, approved.max_opens_per_second, threshold)
        if rate is not None and threshold is not None
        else Limits.of(campaign)
    )
    loosened = looser_limits(bound, body)
    if not loosened:
        return
    raise Problem(
        409,
        "Approval required",
        f"a {campaign.status} campaign runs under the approval {approved.person_name} gave, "
        "which covers its rate, opens budget and failure threshold: one person may set them "
        f"only as strict as approved or stricter, and this edit "
        f"{'; '.join(e['message'] for e in loosened)}. Looser limits need a new approval, "
        "which only a draft can receive: cancel this campaign and have a new one approved",
        type_=approval.APPROVAL_REQUIRED,
        errors=loosened,
    )


# ---------------------------------------------------------------- transitions
def log_transition(
    campaign_id: uuid.UUID,
    actor: str,
    before: CampaignStatus | None,
    after: CampaignStatus,
    reason: str | None,
    *,
    level: int = logging.INFO,
) -> None:
    """The one log line of a campaign's state change, written once the change is committed,
    whoever made it (a command for a person, the engine for itself): who moved which campaign
    from what to what, and why."""
    transitions_log.log(
        level,
        f"campaign {before or 'unknown'} → {after}",
        extra={
            "campaign_id": str(campaign_id),
            "actor": actor,
            "reason": reason,
            "from_status": before.value if before else None,
            "to_status": after.value,
        },
    )


def transition(
    session: AsyncSession,
    principal: Principal,
    campaign: Campaign,
    action: CampaignAction,
    *,
    reason: str | None,
    now: datetime,
) -> CampaignStatus:
    """Move a campaign through its state machine, recording who, when and why."""
    current = CampaignStatus(campaign.status)
    try:
        new = next_status(current, action)
    except InvalidTransition as exc:
        raise Problem(409, "Conflict", str(exc), extra={"campaign_status": current.value}) from None
    campaign.status = new
    campaign.control_version += 1
    campaign.status_reason = reason
    campaign.updated_at = now
    if new is CampaignStatus.running and campaign.started_at is None:
        campaign.started_at = now
    if is_terminal(new):
        campaign.finished_at = now
    session.add(campaign)
    audit.record(
        session,
        principal,
        f"campaign.{action.value}",
        subject_type="campaign",
        subject_id=campaign.id,
        reason=reason,
        before={"status": current.value},
        after={"status": new.value},
    )
    return new


async def start(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    override_reason: str | None,
    reason: str | None,
) -> Campaign:
    guard.require_override_right(principal, override_reason)
    await killswitch.hold_released(
        session, refusal="the global kill switch is engaged; nothing can start"
    )
    campaign = await get(session, campaign_id, lock=True)
    wave_rows = await waves(session, campaign.id)
    specs = [WaveSpec(w.percent, w.hold_seconds) for w in wave_rows]
    judgement = judge_content(campaign.content)
    standing = _standing_override(session, principal, campaign, judgement)
    verdict = await guard.verdict(
        session,
        settings,
        kind=CampaignKind(campaign.kind),
        content=Content.model_validate(campaign.content),
        waves=specs,
        rules=campaign.audience_rules,
        override_reason=override_reason or standing,
        starting=True,
    )
    guard.refuse_unless_allowed(
        session, principal, verdict, subject_id=campaign.id, attempted="start"
    )
    await approval.require_for_start(
        session, settings, principal, campaign, new_override=override_reason
    )
    if override_reason and verdict.overridden:
        _bind_override(campaign, override_reason, principal.actor, judgement)
        _audit_guard(session, principal, campaign, verdict, override_reason)
    now = utcnow()
    later = campaign.start_at is not None and campaign.start_at > now
    action = CampaignAction.schedule if later else CampaignAction.start
    lifetime = settings.max_message_lifetime_seconds
    if lifetime is not None:
        # The deployment's longest lifetime becomes part of the campaign's own deadline, so
        # every later decision (the send path, a resume) reads one field.
        longest = max(campaign.start_at or now, now) + timedelta(seconds=lifetime)
        campaign.expires_at = min(campaign.expires_at or longest, longest)
    transition(session, principal, campaign, action, reason=reason, now=now)
    await session.flush()
    return campaign


async def pause(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID, *, reason: str | None
) -> Campaign:
    """Pause a running or scheduled campaign. Pausing one that is already paused changes
    nothing, so a pause whose answer was "not yet confirmed" can be asked again to confirm
    (the caller waits for the gate again)."""
    campaign = await get(session, campaign_id, lock=True)
    if campaign.status == CampaignStatus.paused:
        return campaign
    transition(session, principal, campaign, CampaignAction.pause, reason=reason, now=utcnow())
    await session.flush()
    return campaign


async def resume(
    session: AsyncSession, principal: Principal, campaign_id: uuid.UUID, *, reason: str | None
) -> Campaign:
    await killswitch.hold_released(
        session, refusal="the global kill switch is engaged; release it before resuming"
    )
    campaign = await get(session, campaign_id, lock=True)
    if campaign.expires_at is not None and campaign.expires_at <= utcnow():
        raise Problem(
            409,
            "Conflict",
            f"the campaign's deadline, {campaign.expires_at.isoformat()}, has passed: "
            "resuming it would send nothing (its rows end as expired); cancel it, or create "
            "a new campaign",
            extra={"campaign_status": str(campaign.status)},
        )
    return await _act(session, principal, campaign_id, CampaignAction.resume, reason)


async def _act(
    session: AsyncSession,
    principal: Principal,
    campaign_id: uuid.UUID,
    action: CampaignAction,
    reason: str | None,
) -> Campaign:
    campaign = await get(session, campaign_id, lock=True)
    transition(session, principal, campaign, action, reason=reason, now=utcnow())
    await session.flush()
    return campaign


async def stop(
    session: AsyncSession,
    principal: Principal,
    campaign_id: uuid.UUID,
    action: CampaignAction,
    *,
    reason: str | None,
) -> Campaign:
    """Cancel or kill: terminal. Queued rows become `cancelled`; rows on the wire finish.

    Stopping a campaign that is already stopped the same way changes nothing, so an
    operator may press kill again (for instance after a timeout) without an error.
    """
    campaign = await get(session, campaign_id, lock=True)
    target = CampaignStatus.killed if action is CampaignAction.kill else CampaignStatus.cancelled
    if campaign.status == target:
        return campaign
    now = utcnow()
    transition(session, principal, campaign, action, reason=reason, now=now)
    await ledger.cancel_open(session, campaign.id, now=now, reason=f"campaign_{target.value}")
    await session.flush()
    return campaign


# A page of a campaign's ledger rows (the router's listing; the query is the ledger's).
deliveries_page = ledger.page


# ---------------------------------------------------------------- holds
MAX_HOLD_SECONDS = 30 * 24 * 3600


async def _holding_wave(
    session: AsyncSession, campaign: Campaign, statuses: tuple[CampaignStatus, ...]
) -> CampaignWave:
    """The released wave a hold belongs to: the current one, with a wave after it."""
    wave_rows = await waves(session, campaign.id)
    current = campaign.current_wave
    if campaign.status not in statuses or current < 0 or current + 1 >= len(wave_rows):
        raise Problem(
            409,
            "Conflict",
            f"a {campaign.status} campaign "
            + (
                "has no wave holding before another"
                if campaign.status in statuses
                else f"cannot change its hold (only while {' or '.join(statuses)})"
            ),
            extra={"campaign_status": str(campaign.status)},
        )
    return wave_rows[current]


async def promote(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    override_reason: str | None,
    reason: str | None,
) -> Campaign:
    """Skip the rest of the current wave's hold: the engine releases the next wave as soon
    as the wave has finished, and its checks have passed (refused with 409 when they have
    not, naming them), unless an override says why the next wave goes without them. The
    promotion is an audit event the engine reads back (`app.checks.runner`); a later hold
    extension undoes it."""
    campaign = await get(session, campaign_id, lock=True)
    wave = await _holding_wave(session, campaign, (CampaignStatus.running,))
    if override_reason is None:
        decision = await wave_checks.gate(session, settings, campaign, wave, audit_pause=False)
        if not decision.release:
            detail = decision.pause or (
                "waiting for "
                + ", ".join(repr(n) for n in decision.waiting)
                + " to pass since the wave's release"
            )
            raise Problem(
                409,
                "Conflict",
                f"the wave's checks do not allow the next wave yet: {detail}; promote with "
                '{"override": {"reason": ...}} to release it without them',
                extra={"waiting": list(decision.waiting)},
            )
    audit.record(
        session,
        principal,
        wave_checks.PROMOTED,
        subject_type="campaign",
        subject_id=campaign.id,
        reason=override_reason or reason,
        before={"wave": wave.index, "hold_until": _iso(hold_until(wave))},
        after={"wave": wave.index, "override": override_reason is not None},
    )
    await session.flush()
    return campaign


async def extend_hold(
    session: AsyncSession,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    seconds: int,
    reason: str,
) -> Campaign:
    """Hold the current wave longer (running or paused); undoes an earlier promotion."""
    campaign = await get(session, campaign_id, lock=True)
    wave = await _holding_wave(session, campaign, (CampaignStatus.running, CampaignStatus.paused))
    if wave.hold_seconds + seconds > MAX_HOLD_SECONDS:
        raise validation_problem(
            [
                FieldError(
                    "seconds",
                    f"the wave would hold {wave.hold_seconds + seconds} s; at most "
                    f"{MAX_HOLD_SECONDS} s (30 days)",
                )
            ]
        )
    before = {"wave": wave.index, "hold_seconds": wave.hold_seconds}
    wave.hold_seconds += seconds
    session.add(wave)
    audit.record(
        session,
        principal,
        wave_checks.HOLD_EXTENDED,
        subject_type="campaign",
        subject_id=campaign.id,
        reason=reason,
        before=before,
        after={"wave": wave.index, "hold_seconds": wave.hold_seconds},
    )
    await session.flush()
    return campaign


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def throttle_view(campaign: Campaign) -> dict[str, Any]:
    """The campaign's throttle as the API shows it: what was set and, with an opens budget,
    the send rate the engine last allowed and why."""
    return _throttle(
        campaign.throttle_per_second,
        campaign.max_opens_per_second,
        campaign.effective_per_second,
        campaign.effective_reason,
    )


def _throttle(
    per_second: int,
    max_opens_per_second: int | None,
    effective_per_second: float | None,
    effective_reason: str | None,
) -> dict[str, Any]:
    view: dict[str, Any] = {"per_second": per_second}
    if max_opens_per_second is not None:
        view["max_opens_per_second"] = max_opens_per_second
        view["effective_per_second"] = effective_per_second
        view["effective_reason"] = effective_reason or (
            "no estimate yet: the budget itself, as if every send were opened at once"
        )
    return view
