"""Four-eyes approval: a live campaign starts only with the approval of a second human,
bound to what it sends and to whom (`app.approval.binding`).

`approve` is the one approve command: the API, the form and Slack all call it, with the
principal of the person acting and the channel they came through. `require_for_start` is
what the start command asks; `void` is what an edit does to a standing approval.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from app.approval import binding as bound
from app.approval import hands
from app.approval import repository as repo
from app.approval.models import CampaignApproval
from app.approval.schemas import ApprovalOut, ApprovalStatus
from app.audiences import service as audiences
from app.audit import service as audit
from app.auth import service as auth_service
from app.auth.models import Scope
from app.auth.principal import Channel, Principal
from app.campaigns import repository as campaigns_repo
from app.campaigns.models import Campaign, CampaignKind, CampaignWave
from app.campaigns.state import CampaignStatus
from app.db.types import utcnow
from app.errors import Problem, not_found
from app.guard.override import judge_content, standing_reason
from app.people import repository as people_repo
from app.people.models import Person, PersonKind
from app.settings import Settings

APPROVAL_REQUIRED = "https://wavecast.dev/problems/approval-required"
CHANGED_SINCE_READ = "https://wavecast.dev/problems/changed-since-read"


@dataclass(frozen=True)
class Requirement:
    reasons: list[str]
    audience_size: int

    @property
    def required(self) -> bool:
        return bool(self.reasons)


async def current_binding(session: AsyncSession, campaign: Campaign) -> str:
    """The binding of the campaign as the database holds it now."""
    return campaign_binding(campaign, await campaigns_repo.waves(session, campaign.id))


def campaign_binding(campaign: Campaign, waves: Sequence[CampaignWave]) -> str:
    """The binding of `campaign` with its `waves` (in order): which of their columns are
    bound is decided column by column (tests/approval/test_binding.py)."""
    override = _standing_override(campaign)
    return bound.binding(
        kind=str(campaign.kind),
        content=campaign.content,
        audience_rules=campaign.audience_rules,
        waves=[(w.percent, w.hold_seconds) for w in waves],
        start_at=campaign.start_at,
        local_time=campaign.local_time,
        checks=campaign.checks,
        throttle_per_second=campaign.throttle_per_second,
        max_opens_per_second=campaign.max_opens_per_second,
        failure_threshold_percent=campaign.failure_threshold_percent,
        quiet_hours=campaign.quiet_hours,
        expires_at=campaign.expires_at,
        priority=str(campaign.priority),
        override_reason=override,
        override_hash=campaign.guard_override_hash if override else None,
    )


def _standing_override(campaign: Campaign) -> str | None:
    return standing_reason(
        campaign.guard_override_reason,
        campaign.guard_override_hash,
        judge_content(campaign.content),
    )


async def requirement(
    session: AsyncSession, settings: Settings, campaign: Campaign, *, new_override: bool = False
) -> Requirement:
    """Whether the campaign needs an approval to start now, and why. `new_override`: the
    start itself brings a guard override."""
    size, _ = await audiences.estimate(session, campaign.audience_rules)
    reasons = bound.needed_because(
        live=campaign.kind == CampaignKind.live,
        audience_size=size,
        threshold=settings.approval_threshold,
        production=settings.is_production,
        has_override=new_override or _standing_override(campaign) is not None,
    )
    return Requirement(reasons, size)


async def standing_approval(
    session: AsyncSession, campaign: Campaign, binding: str | None = None
) -> CampaignApproval | None:
    """The approval that covers the campaign as it is now, or None."""
    binding = binding or await current_binding(session, campaign)
    for approval in await repo.standing(session, campaign.id):
        if approval.binding == binding:
            return approval
    return None


@dataclass(frozen=True)
class Writers:
    """Who wrote a campaign (`people`: its authors) and with which keys."""

    people: set[uuid.UUID]
    keys: set[uuid.UUID]


async def writers(session: AsyncSession, campaign: Campaign) -> Writers:
    """Who may not approve the campaign: whoever created it and everyone who edited it
    since, read from the audit log (`campaign.created`, `campaign.edited`), so a later edit
    by someone else, or by no person at all, never clears an earlier author's hand. The
    campaign's own author columns count too (a campaign whose events predate people). With
    them, the keys they wrote with."""
    written = await repo.writes(session, campaign.id)
    stored = {campaign.created_by_person_id, campaign.edited_by_person_id}
    people = {p for p, _ in written if p is not None} | {p for p in stored if p is not None}
    return Writers(people, {k for _, k in written if k is not None})


async def approve(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    comment: str | None,
    expected_binding: str | None = None,
) -> CampaignApproval:
    """Approve a draft campaign as the approver read it: the one approve command, for the
    API, the form and Slack (pass `app.people.service.slack_principal(...)` from Slack).

    `expected_binding` is the campaign's binding when the approver read it (the form and
    the Slack button always carry it; an API caller may): refused (409) when the campaign
    has changed since, so an edit landing between reading and approving is never approved
    unseen. Without it, the campaign as it is now is approved.

    Refused (403) unless `principal` is a human person holding `campaigns:approve` (or
    admin) who neither created nor edited the campaign: approving your own campaign is
    refused whatever keys you hold. Refused (403) too when hands crossed
    (`app.approval.hands`): the approver made a key the campaign was written with (or the
    key that made it), or the means of approving passed through an author's hands (a key an
    author made, or made the key that made it; a Slack user an author bound). Refused (409)
    once the campaign has left draft. The approval is bound to the campaign's current
    binding (content, audience, rollout, checks, throttle, the guard override the approver
    reads) and audited (`campaign.approved`); approving again what the same person already
    approved changes nothing. Flushes; the caller commits.
    """
    if not principal.has(Scope.campaigns_approve):
        raise Problem(403, "Forbidden", "approving a campaign needs the 'campaigns:approve' scope")
    campaign = await campaigns_repo.get(session, campaign_id, lock=True)
    if campaign is None:
        raise not_found("Campaign", campaign_id)
    if principal.person_id is None or principal.person_name is None:
        raise Problem(403, "Forbidden", "only a person may approve a campaign")
    if not principal.is_human:
        raise Problem(
            403,
            "Forbidden",
            f"{principal.person_name} is a service, not a human: only a human may approve a "
            "campaign (the second pair of eyes)",
        )
    wrote = await writers(session, campaign)
    if principal.person_id in wrote.people:
        raise Problem(
            403,
            "Forbidden",
            f"{principal.person_name} created or edited this campaign: its approval needs "
            "a second person, whatever keys the author holds",
            type_=APPROVAL_REQUIRED,
        )
    await _refuse_authors_hands(session, principal, wrote)
    if campaign.status != CampaignStatus.draft:
        raise Problem(
            409,
            "Conflict",
            f"only a draft campaign is approved; this one is {campaign.status}",
            extra={"campaign_status": str(campaign.status)},
        )
    binding = await current_binding(session, campaign)
    if expected_binding is not None and expected_binding != binding:
        raise Problem(
            409,
            "Conflict",
            "the campaign changed since it was read for approval: read it again as it is now "
            "and approve that",
            type_=CHANGED_SINCE_READ,
            extra={"expected_binding": expected_binding, "binding": binding},
        )
    existing = await standing_approval(session, campaign, binding)
    if existing is not None and existing.person_id == principal.person_id:
        return existing
    override = _standing_override(campaign)
    approval = CampaignApproval(
        campaign_id=campaign.id,
        binding=binding,
        person_id=principal.person_id,
        person_name=principal.person_name,
        key_id=principal.key_id,
        channel=principal.channel.value,
        comment=comment,
        override_reason=override,
        throttle_per_second=campaign.throttle_per_second,
        max_opens_per_second=campaign.max_opens_per_second,
        failure_threshold_percent=campaign.failure_threshold_percent,
    )
    session.add(approval)
    audit.record(
        session,
        principal,
        "campaign.approved",
        subject_type="campaign",
        subject_id=campaign.id,
        reason=comment,
        after={"binding": binding, "override_reason": override, "approval_id": str(approval.id)},
    )
    await session.flush()
    return approval


async def _refuse_authors_hands(
    session: AsyncSession, principal: Principal, wrote: Writers
) -> None:
    """Refuse (403) an approval by someone whose hands a key the campaign was written with
    passed through (they made it, or made the key that made it: they could have written
    with it), or whose means of approving passed through the hands of one of its authors
    (`wrote.people`): their being a human, if an author turned them into one; from Slack, the
    binding of the approver's Slack user (which must still be the one they acted as); with
    a key (the API, the form), that key."""
    assert principal.person_id is not None
    authors = wrote.people
    origins = await repo.key_origins(session)
    if principal.person_id in hands.keys_makers(wrote.keys, origins):
        raise Problem(
            403,
            "Forbidden",
            f"{principal.person_name} made a key this campaign was written with (or the key "
            "that made it): whoever made it could have written with it, so they are not a "
            "second pair of eyes",
            type_=APPROVAL_REQUIRED,
        )
    slack = principal.channel is Channel.slack
    if slack:
        # Locked before its history is read: the binding judged is the one the approval is
        # given under, and no change to it lands in between.
        person = await people_repo.get(session, principal.person_id, lock=True)
        if (
            person is None
            or principal.slack_user_id is None
            or person.slack_user_id != principal.slack_user_id
        ):
            raise Problem(
                403,
                "Forbidden",
                f"{principal.person_name}'s Slack user changed since the approval was asked "
                "for: approve again as the person the Slack user is now",
                type_=APPROVAL_REQUIRED,
            )
    histories = await repo.person_events(session, [principal.person_id])
    events = histories.get(principal.person_id, [])
    turned = hands.origin_makers(hands.made_human_origin(events), origins) & authors
    if turned:
        names = await _names(session, turned)
        raise Problem(
            403,
            "Forbidden",
            f"{principal.person_name} was made a human by {names}, "
            "who wrote this campaign: only a human approves, so an author who turns a service "
            "into one may approve through its keys; it is not a second pair of eyes",
            type_=APPROVAL_REQUIRED,
        )
    if slack:
        origin = hands.slack_binding_origin(principal.slack_user_id, events)
        means = "Slack user was bound to them"
        through = hands.origin_makers(origin, origins) & authors
    else:
        means = "key was made"
        through = hands.key_makers(principal.key_id, origins) & authors
    if not through:
        return
    names = await _names(session, through)
    raise Problem(
        403,
        "Forbidden",
        f"{principal.person_name}'s {means} by {names}, who wrote this campaign: an author "
        "could have used it, so it is not a second pair of eyes. Approve with a key made by "
        "someone who wrote nothing of the campaign (another admin, or `wavecast keys create` "
        "on the server)" + (", or from a Slack user bound by such a person" if slack else ""),
        type_=APPROVAL_REQUIRED,
        extra={"made_by_authors": sorted(str(p) for p in through)},
    )


async def _names(session: AsyncSession, ids: set[uuid.UUID]) -> str:
    return ", ".join(sorted(p.name for p in await people_repo.many(session, sorted(ids))))


async def require_for_start(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    campaign: Campaign,
    *,
    new_override: str | None,
) -> CampaignApproval | None:
    """Refuse (409, naming the missing approval) to start a campaign that needs an approval
    without one that covers it as it is now; the approval that covers it otherwise (None
    when none is needed). In production a guard override given with the start itself is
    refused: it is approved with the campaign, so it is given first (an edit) and approved.
    """
    fresh = new_override is not None and new_override != _standing_override(campaign)
    needed = await requirement(session, settings, campaign, new_override=fresh)
    if not needed.required:
        return None
    if fresh and settings.is_production:
        raise Problem(
            409,
            "Approval required",
            "in production a guard override is approved with the campaign by a second "
            'person: give it with PATCH /v1/campaigns/{id} {"override": {"reason": ...}}, '
            "then have it approved (POST /v1/campaigns/{id}/approve)",
            type_=APPROVAL_REQUIRED,
            extra={"approval": {"required": True, "reasons": needed.reasons}},
        )
    approval = await standing_approval(session, campaign)
    if approval is not None:
        return approval
    who = await may_approve(session, campaign)
    latest = await repo.latest(session, campaign.id)
    voided = (
        f" (the approval by {latest.person_name} was voided: {latest.void_reason})"
        if latest is not None and latest.voided_at is not None
        else ""
    )
    raise Problem(
        409,
        "Approval required",
        f"campaign {campaign.id} has no approval{voided}: "
        + "; ".join(needed.reasons)
        + ". A human with the 'campaigns:approve' scope who neither created nor edited "
        f"it approves it with POST /v1/campaigns/{campaign.id}/approve"
        + (f" (may approve: {', '.join(who)})" if who else " (no one may approve it yet)"),
        type_=APPROVAL_REQUIRED,
        extra={
            "approval": {
                "required": True,
                "missing": "campaign approval",
                "reasons": needed.reasons,
                "may_approve": who,
            }
        },
    )


async def void(
    session: AsyncSession, principal: Principal, campaign: Campaign, *, reason: str
) -> None:
    """Void the campaign's standing approvals (an edit: what was approved is not what would
    be sent any more), audited as `campaign.approval_voided`."""
    now = utcnow()
    for approval in await repo.standing(session, campaign.id):
        approval.voided_at = now
        approval.void_reason = reason
        session.add(approval)
        audit.record(
            session,
            principal,
            "campaign.approval_voided",
            subject_type="campaign",
            subject_id=campaign.id,
            reason=reason,
            before={"approved_by": approval.person_name, "binding": approval.binding},
        )


async def may_approve(
    session: AsyncSession, campaign: Campaign, wrote: Writers | None = None
) -> list[str]:
    """The names of the humans who may approve the campaign: their keys (not revoked) hold
    campaigns:approve or admin, they neither created nor edited it (`wrote`: its authors,
    when the caller has them) nor made a key it was written with, no author turned them into
    a human, and they have a means no author's hands passed through (`app.approval.hands`):
    such a key that no author made, or a Slack user no author bound."""
    wrote = await writers(session, campaign) if wrote is None else wrote
    authors = wrote.people
    origins = await repo.key_origins(session)
    barred = authors | hands.keys_makers(wrote.keys, origins)
    rights = {Scope.campaigns_approve.value, Scope.admin.value}
    holding: dict[uuid.UUID, list[uuid.UUID]] = {}
    for key in await auth_service.list_keys(session, include_revoked=False):
        if rights & set(key.scopes) and key.person_id not in barred:
            holding.setdefault(key.person_id, []).append(key.id)
    humans = [
        p for p in await people_repo.many(session, list(holding)) if p.kind == PersonKind.human
    ]
    events = await repo.person_events(session, [p.id for p in humans])

    def untouched(made: set[uuid.UUID]) -> bool:
        return not made & authors

    def may(person: Person) -> bool:
        history = events.get(person.id, [])
        if not untouched(hands.origin_makers(hands.made_human_origin(history), origins)):
            return False
        if any(untouched(hands.key_makers(k, origins)) for k in holding[person.id]):
            return True
        # As `approve` judges it: a binding no event set names no one.
        bound_by = hands.slack_binding_origin(person.slack_user_id, history)
        return person.slack_user_id is not None and untouched(
            hands.origin_makers(bound_by, origins)
        )

    return sorted(p.name for p in humans if may(p))


async def status(session: AsyncSession, settings: Settings, campaign: Campaign) -> ApprovalStatus:
    """The campaign's approval as the API and the form show it."""
    needed = await requirement(session, settings, campaign)
    binding = await current_binding(session, campaign)
    approval = await standing_approval(session, campaign, binding)
    wrote = await writers(session, campaign)
    named = await people_repo.many(session, sorted(wrote.people))
    return ApprovalStatus(
        campaign_id=campaign.id,
        required=needed.required,
        reasons=needed.reasons,
        approval=None if approval is None else out(approval),
        waiting=(needed.required and approval is None and campaign.status == CampaignStatus.draft),
        override_reason=_standing_override(campaign),
        authors=sorted(p.name for p in named),
        may_approve=await may_approve(session, campaign, wrote),
        binding=binding,
    )


def out(approval: CampaignApproval) -> ApprovalOut:
    return ApprovalOut.model_validate(approval, from_attributes=True)
