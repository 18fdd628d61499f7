"""What `/wavecast` and the message buttons do, through the same commands as the API and the
form, as the person the Slack user is.

- The Slack user must be a person (`person.slack_user_id`) whose keys' scopes allow the
  action (the same scope the API asks); otherwise the answer says why and the attempt is
  audited (`slack.refused`).
- Stopping takes one person and is immediate: `kill`, `kill-all` and `pause` run the stop
  command (`app.campaigns.commands`) before answering, so once the answer says stopped,
  nothing more of it is sent.
- Starting again takes two: `release` and `resume` only record a request
  (`slack.confirmation_requested`) with the version of what it would start again (the kill
  switch's `version`, the campaign's `control_version`); the team channel shows it with a
  Confirm button, which only a different person with the right scope can press (`confirm`),
  within an hour and while that version has not moved (a Confirm never undoes a newer stop
  than the one it was asked about), and which then runs the command as that person.
- Approve (the button on an approval request) runs the one approve command
  (`app.approval.service.approve`), with its rules: a human, not the campaign's author,
  holding `campaigns:approve`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.approval import service as approval
from app.audit import service as audit
from app.auth.models import Scope
from app.auth.principal import Channel, Principal
from app.campaigns import commands
from app.campaigns import service as campaigns
from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.control.plane import Control
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.errors import Problem
from app.killswitch import service as switches
from app.people import service as people
from app.settings import Settings
from app.slack import repository
from app.slack.parse import USAGE, Command, CommandError, Verb, parse

CONFIRMATION = "slack.confirmation_requested"
REFUSED = "slack.refused"
# A request for a second person's Confirm lapses after this long: ask again.
CONFIRM_WITHIN = timedelta(hours=1)
# A Confirm whose request was made about another state than the current one (a Problem
# type, so the refusal can be told apart and audited).
STATE_MOVED = "https://wavecast.dev/problems/confirm-state-moved"

SCOPE: dict[Verb, Scope] = {
    Verb.status: Scope.campaigns_read,
    Verb.kill: Scope.kill,
    Verb.kill_all: Scope.kill,
    Verb.pause: Scope.campaigns_operate,
    Verb.resume: Scope.campaigns_operate,
    # Releasing the switch is the admin's, as in the API.
    Verb.release: Scope.admin,
}


@dataclass(frozen=True)
class Reply:
    """What the person sees: `public` replies go to the channel, others to them alone."""

    text: str
    public: bool = False
    ok: bool = True

    def slack(self) -> dict[str, Any]:
        return {"response_type": "in_channel" if self.public else "ephemeral", "text": self.text}


@dataclass
class SlackDeps:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    control: Control


# ------------------------------------------------------------------------------ people
async def acting_person(
    deps: SlackDeps, user_id: str, attempted: str, scope: Scope | None
) -> Principal | Reply:
    """The principal of the person behind `user_id`, or the refusal (audited) when there is
    none or they lack `scope`."""
    async with deps.sessionmaker() as session:
        person = await people.by_slack_user_id(session, user_id)
        principal = None if person is None else await people.slack_principal(session, person)
    if principal is None:
        return await refuse(
            deps,
            Principal(actor=f"slack:{user_id}", channel=Channel.slack),
            attempted,
            f"your Slack user ({user_id}) is not linked to a Wavecast person: an admin links "
            'it with PATCH /v1/people/{id} {"slack_user_id": "' + user_id + '"}',
        )
    if scope is not None and not principal.has(scope):
        return await refuse(
            deps,
            principal,
            attempted,
            f"{principal.person_name} holds no key with the '{scope.value}' scope that "
            f"`{attempted}` needs",
        )
    return principal


async def refuse(deps: SlackDeps, principal: Principal, attempted: str, why: str) -> Reply:
    async with unit_of_work(deps.sessionmaker) as session:
        audit.record(
            session,
            principal,
            REFUSED,
            subject_type="slack",
            subject_id=None,
            reason=why,
            after={"attempted": attempted[:500]},
        )
    return Reply(f":no_entry: Refused: {why}.", ok=False)


# ----------------------------------------------------------------------------- command
async def run(deps: SlackDeps, user_id: str, text: str) -> Reply:
    """Run `/wavecast <text>` for the Slack user `user_id`."""
    try:
        command = parse(text)
    except CommandError as exc:
        return Reply(f":warning: {exc}", ok=False)
    if command.verb is Verb.help:
        return Reply(USAGE)
    attempted = f"/wavecast {text.strip()}"
    who = await acting_person(deps, user_id, attempted, SCOPE[command.verb])
    if isinstance(who, Reply):
        return who
    try:
        return await _run(deps, who, command)
    except Problem as problem:
        return Reply(f":warning: {problem.detail}", ok=False)


async def _run(deps: SlackDeps, principal: Principal, command: Command) -> Reply:
    if command.verb is Verb.status:
        return await status(deps)
    if command.verb is Verb.kill_all:
        assert command.reason is not None
        async with unit_of_work(deps.sessionmaker) as session:
            engaged = await commands.engage_switch(
                session, deps.control, principal, reason=command.reason
            )
        return Reply(
            f":red_circle: Global kill switch engaged by {principal.person_name}: "
            f"{len(engaged.paused)} campaign(s) paused; no provider request starts any more. "
            f"Reason: {command.reason}",
            public=True,
        )
    if command.verb is Verb.release:
        return await _ask_confirmation(deps, principal, command, None)
    campaign = await find_campaign(deps, command.campaign or "")
    if command.verb is Verb.resume:
        return await _ask_confirmation(deps, principal, command, campaign)
    assert command.reason is not None
    async with unit_of_work(deps.sessionmaker) as session:
        if command.verb is Verb.kill:
            stopped = await commands.kill(
                session, deps.control, principal, campaign.id, reason=command.reason
            )
        else:
            stopped = await commands.pause(
                session, deps.control, principal, campaign.id, reason=command.reason
            )
    verb = "killed" if command.verb is Verb.kill else "paused"
    return Reply(
        f":octagonal_sign: {campaign.name} ({campaign.id}) {verb} by "
        f"{principal.person_name}: no provider request of it starts any more "
        f"(status {stopped.status}). Reason: {command.reason}",
        public=True,
    )


async def find_campaign(deps: SlackDeps, ref: str) -> Campaign:
    async with deps.sessionmaker() as session:
        found = await repository.campaigns_matching(session, ref)
    if not found:
        raise Problem(
            404,
            "Not found",
            f'no campaign matches {ref!r} (an id, 8+ characters of one, or "its name")',
        )
    if len(found) > 1:
        names = ", ".join(f"{c.name} ({c.id})" for c in found[:5])
        raise Problem(
            409, "Conflict", f"{ref!r} matches {len(found)} campaigns: {names}; give more of the id"
        )
    return found[0]


async def status(deps: SlackDeps) -> Reply:
    async with deps.sessionmaker() as session:
        switch = await switches.get_switch(session)
        live = await repository.campaigns_in(
            session, [CampaignStatus.running, CampaignStatus.scheduled, CampaignStatus.paused]
        )
    lines = [
        ":red_circle: Global kill switch ENGAGED" + f" by {switch.changed_by} ({switch.reason})"
        if switch.engaged
        else ":large_green_circle: Global kill switch released"
    ]
    if not live:
        lines.append("No campaign is running, scheduled or paused.")
    for campaign in live:
        wave = f", wave {campaign.current_wave + 1}" if campaign.current_wave >= 0 else ""
        link = f"{deps.settings.public_url.rstrip('/')}/ui/campaigns/{campaign.id}"
        lines.append(
            f"• <{link}|{campaign.name}> `{str(campaign.id)[:8]}`: {campaign.status}{wave}"
        )
    return Reply("\n".join(lines))


# ------------------------------------------------------------------------ two people
async def _ask_confirmation(
    deps: SlackDeps, principal: Principal, command: Command, campaign: Campaign | None
) -> Reply:
    """Record the request, with the version of the state it asks to leave; the outbox
    posts it with its Confirm button."""
    async with unit_of_work(deps.sessionmaker) as session:
        if campaign is None:
            switch = await switches.get_switch(session)
            if not switch.engaged:
                raise Problem(409, "Conflict", "the global kill switch is not engaged")
            version = switch.version
        else:
            current = await campaigns.get(session, campaign.id)
            if current.status != CampaignStatus.paused:
                raise Problem(409, "Conflict", f"{current.name} is {current.status}, not paused")
            version = current.control_version
        audit.record(
            session,
            principal,
            CONFIRMATION,
            subject_type="kill_switch" if campaign is None else "campaign",
            subject_id=None if campaign is None else campaign.id,
            reason=command.reason,
            after={
                "command": str(command.verb),
                "campaign_id": None if campaign is None else str(campaign.id),
                "requested_by": str(principal.person_id),
                "scope": SCOPE[command.verb].value,
                # What the Confirm may start again: this stop, not a later one.
                "state_version": version,
            },
        )
    what = "release the global kill switch" if campaign is None else f"resume {campaign.name}"
    return Reply(
        f":hourglass: Asked the channel to {what}: a different person with the "
        f"'{SCOPE[command.verb].value}' scope presses Confirm. Reason: {command.reason}",
        public=True,
    )


async def confirm(deps: SlackDeps, user_id: str, request_sequence: int) -> Reply:
    """The Confirm button of a request: a second person runs the command."""
    attempted = f"confirm request #{request_sequence}"
    async with deps.sessionmaker() as session:
        request = await repository.event(session, request_sequence)
        done = await repository.confirmation_of(session, request_sequence)
    if request is None or request.action != CONFIRMATION or not request.after:
        return Reply(f":warning: request #{request_sequence} is not a request to confirm", ok=False)
    command = Verb(str(request.after.get("command")))
    who = await acting_person(deps, user_id, attempted, SCOPE[command])
    if isinstance(who, Reply):
        return who
    if str(who.person_id) == request.after.get("requested_by"):
        return await refuse(
            deps,
            who,
            attempted,
            "you asked for this yourself: starting again takes a second person",
        )
    if done is not None:
        return Reply(f"Already confirmed by {done.person_name or done.actor}.", ok=False)
    if utcnow() - request.occurred_at > CONFIRM_WITHIN:
        return Reply(":warning: this request has lapsed (older than an hour): ask again.", ok=False)
    asker = request.person_name or request.actor
    reason = f"{request.reason} (asked by {asker}, confirmed by {who.person_name})"
    try:
        async with unit_of_work(deps.sessionmaker) as session:
            # Locked until the command has run: the state cannot move between this check
            # and the command.
            await _still_as_requested(session, command, request.after)
            audit.record(
                session,
                who,
                repository.CONFIRMED,
                subject_type=request.subject_type,
                subject_id=request.subject_id,
                reason=request.reason,
                after={"request": request_sequence, "command": str(command)},
            )
            if command is Verb.release:
                await commands.release_switch(session, deps.control, who, reason=reason)
                text = (
                    f":large_green_circle: Global kill switch released by {who.person_name}; "
                    "campaigns stay paused until resumed one by one."
                )
            else:
                campaign_id = uuid.UUID(str(request.after.get("campaign_id")))
                resumed = await commands.resume(
                    session, deps.control, who, campaign_id, reason=reason
                )
                text = f":arrow_forward: {resumed.name} resumed by {who.person_name}."
    except Problem as problem:
        if problem.type == STATE_MOVED:
            return await refuse(deps, who, attempted, problem.detail)
        return Reply(f":warning: {problem.detail}", ok=False)
    return Reply(text, public=True)


async def _still_as_requested(
    session: AsyncSession, command: Verb, requested: dict[str, Any]
) -> None:
    """Refuse (STATE_MOVED) a Confirm when what it would start again is no longer the state
    the request was made about: the switch was released and engaged again, or the campaign
    resumed and paused again (by a check, a person, the switch) since. Locks the rows, the
    switch first: the order every command that makes a campaign live and `engage_switch`
    take them in, so a Confirm and a concurrent stop never deadlock."""
    version = requested.get("state_version")
    switch = await switches.get_switch(session, lock=True)
    if command is Verb.release:
        current = switch.version
        what = "the global kill switch was released or engaged again"
    else:
        campaign_id = uuid.UUID(str(requested.get("campaign_id")))
        campaign = await campaigns.get(session, campaign_id, lock=True)
        current = campaign.control_version
        what = f"{campaign.name} changed state (now {campaign.status})"
    if version is None:
        why = "this request does not record the state it was made about"
    elif version != current:
        why = f"{what} since this request was made"
    else:
        return
    raise Problem(
        409,
        "Conflict",
        f"{why}: confirming it could undo a newer stop; ask again if it should still start",
        type_=STATE_MOVED,
        extra={"requested_version": version, "current_version": current},
    )


async def approve(deps: SlackDeps, user_id: str, value: str) -> Reply:
    """The Approve button: the one approve command, as the person pressing it, for the
    campaign as the message showed it (its value: `campaign id:binding`); refused when the
    campaign has changed since the message was posted."""
    campaign_ref, _, binding = value.partition(":")
    who = await acting_person(deps, user_id, f"approve {campaign_ref}", None)
    if isinstance(who, Reply):
        return who
    try:
        campaign_id = uuid.UUID(campaign_ref)
    except ValueError:
        return Reply(":warning: not a campaign id", ok=False)
    if not binding:
        # A button posted before buttons carried what they showed: nothing says which
        # version of the campaign its reader saw.
        return Reply(
            ":warning: this Approve button does not say which version of the campaign it "
            "showed: approve from the newest approval request or the campaign page.",
            ok=False,
        )
    try:
        async with unit_of_work(deps.sessionmaker) as session:
            await approval.approve(
                session, deps.settings, who, campaign_id, comment=None, expected_binding=binding
            )
            campaign = await campaigns.get(session, campaign_id)
    except Problem as problem:
        if problem.status == 403:
            return await refuse(deps, who, f"approve {campaign_ref}", problem.detail)
        return Reply(f":warning: {problem.detail}", ok=False)
    return Reply(f":white_check_mark: {campaign.name} approved by {who.person_name}.", public=True)
