"""Every change of a campaign's state that a person asks for, and of the global kill switch,
as one command.

A command is the whole protocol of a decision: decide in the database (the service, under
the rows' locks), commit, then tell every worker through Redis (the control plane), and,
for a stop, wait until no provider request of the stopped campaigns can start any more.
The API and the form call these (a CLI or a team channel must too), so the stop guarantee
holds whichever was used: once a stop command returns, nothing more is sent; a stop that
could not be confirmed raises a 503 problem that says so.

Commands take a session that nothing has committed yet and commit it themselves; the
caller's unit of work then has nothing left to do. The send loop's own pauses (a guard
refusal, a provider halt, audience rules that no longer parse) are here too, with a unit of
work of their own. The rollout engine's transitions (a scheduled start, the guardrail's and
the staging guard's pauses, completion) are made inside its tick's transaction, under the
campaign's lock, and reach Redis through its grant sync.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth.principal import SYSTEM, Principal
from app.campaigns import repository
from app.campaigns import service as campaigns
from app.campaigns.models import Campaign
from app.campaigns.schemas import CampaignPatch
from app.campaigns.state import CampaignAction, CampaignStatus
from app.control.plane import Control
from app.db.session import commit_now, unit_of_work
from app.db.types import utcnow
from app.killswitch import service as switches
from app.killswitch.models import KillSwitch
from app.settings import Settings

log = logging.getLogger("wavecast.commands")


@dataclass(frozen=True)
class Engaged:
    switch: KillSwitch
    paused: list[Campaign]


async def start(
    session: AsyncSession,
    control: Control,
    settings: Settings,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    override_reason: str | None,
    reason: str | None,
) -> Campaign:
    """Start now, or schedule for `start_at`; the guard checks again."""
    before = await _status_before(session, campaign_id, switch_first=True)
    campaign = await campaigns.start(
        session, settings, principal, campaign_id, override_reason=override_reason, reason=reason
    )
    return await _published(session, control, campaign, principal, before, reason)


async def resume(
    session: AsyncSession,
    control: Control,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    reason: str | None,
) -> Campaign:
    before = await _status_before(session, campaign_id, switch_first=True)
    campaign = await campaigns.resume(session, principal, campaign_id, reason=reason)
    return await _published(session, control, campaign, principal, before, reason)


async def edit(
    session: AsyncSession,
    control: Control,
    settings: Settings,
    principal: Principal,
    campaign_id: uuid.UUID,
    body: CampaignPatch,
) -> Campaign:
    """An edit; a running campaign's new throttle reaches every worker within a second."""
    campaign = await campaigns.patch(session, settings, principal, campaign_id, body)
    return await _published(session, control, campaign)


async def pause(
    session: AsyncSession,
    control: Control,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    reason: str | None,
) -> Campaign:
    """Pause: once this returns, no provider request of the campaign starts."""
    before = await _status_before(session, campaign_id)
    campaign = await campaigns.pause(session, principal, campaign_id, reason=reason)
    return await _stopped(session, control, campaign, principal, before, reason)


async def cancel(
    session: AsyncSession,
    control: Control,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    reason: str | None,
) -> Campaign:
    """Cancel: terminal; queued deliveries become `cancelled`, those on the wire finish."""
    before = await _status_before(session, campaign_id)
    campaign = await campaigns.stop(
        session, principal, campaign_id, CampaignAction.cancel, reason=reason
    )
    return await _stopped(session, control, campaign, principal, before, reason)


async def kill(
    session: AsyncSession,
    control: Control,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    reason: str,
) -> Campaign:
    """Kill: immediate and terminal; once this returns, no provider request of the campaign
    starts on any worker."""
    before = await _status_before(session, campaign_id)
    campaign = await campaigns.stop(
        session, principal, campaign_id, CampaignAction.kill, reason=reason
    )
    return await _stopped(session, control, campaign, principal, before, reason)


async def engage_switch(
    session: AsyncSession, control: Control, principal: Principal, *, reason: str
) -> Engaged:
    """Stop everything: the switch closes every grant, and every running or scheduled
    campaign is paused (and stays paused after the release). Once this returns, no provider
    request starts on any worker."""
    before_switch = not (await switches.get_switch(session, lock=True)).engaged
    switch = await switches.engage(session, principal, reason=reason)
    # Read after the switch's lock was granted, so every start or resume that held the lock
    # before is seen (read committed): none is left out of the pause.
    live = await repository.live(session, lock=True)
    now = utcnow()
    paused_reason = f"global kill switch engaged: {reason}"
    before = {campaign.id: CampaignStatus(campaign.status) for campaign in live}
    for campaign in live:
        campaigns.transition(
            session, principal, campaign, CampaignAction.pause, reason=paused_reason, now=now
        )
    await session.flush()
    what = "the global kill switch is engaged"
    await commit_now(session)
    log.warning(
        "global kill switch engaged",
        extra={
            "actor": principal.actor,
            "reason": reason,
            "from_status": "released" if before_switch else "engaged",
            "to_status": "engaged",
            "paused_campaigns": len(live),
        },
    )
    for campaign in live:
        _log_transition(campaign, principal, before[campaign.id], paused_reason)
    await control.publish_switch_or_refuse(switch, what=what)
    await control.stop(live, everything=True, what=what)
    return Engaged(switch, live)


async def release_switch(
    session: AsyncSession, control: Control, principal: Principal, *, reason: str
) -> KillSwitch:
    """Release the switch; campaigns stay paused until resumed one by one."""
    switch = await switches.release(session, principal, reason=reason)
    await commit_now(session)
    log.warning(
        "global kill switch released",
        extra={
            "actor": principal.actor,
            "reason": reason,
            "from_status": "engaged",
            "to_status": "released",
        },
    )
    await control.publish_switch(switch)
    return switch


async def auto_pause(
    sessionmaker: async_sessionmaker[AsyncSession],
    control: Control,
    campaign_id: uuid.UUID,
    reason: str,
) -> None:
    """Pause a running campaign on the system's own authority (the guard at send time, a
    provider refusing our credentials), audited, and close its gate."""
    async with unit_of_work(sessionmaker) as session:
        campaign = await campaigns.get(session, campaign_id, lock=True)
        if campaign.status != CampaignStatus.running:
            return
        campaigns.transition(
            session, SYSTEM, campaign, CampaignAction.auto_pause, reason=reason, now=utcnow()
        )
    _log_transition(campaign, SYSTEM, CampaignStatus.running, reason, level=logging.WARNING)
    await control.publish_campaign(campaign)


async def _status_before(
    session: AsyncSession, campaign_id: uuid.UUID, *, switch_first: bool = False
) -> CampaignStatus | None:
    """The campaign's status before the command, read under the lock the service takes next
    (so nothing changes it in between). A command that makes a campaign live locks the
    switch first, in the order every such transition and ``engage_switch`` take them."""
    if switch_first:
        await switches.get_switch(session, lock=True)
    campaign = await repository.get(session, campaign_id, lock=True)
    return None if campaign is None else CampaignStatus(campaign.status)


def _log_transition(
    campaign: Campaign,
    principal: Principal,
    before: CampaignStatus | None,
    reason: str | None,
    *,
    level: int = logging.INFO,
) -> None:
    """One line per decision, once it is committed (a stop asked again, to confirm it, logs
    its status unchanged)."""
    campaigns.log_transition(
        campaign.id, principal.actor, before, CampaignStatus(campaign.status), reason, level=level
    )


async def _published(
    session: AsyncSession,
    control: Control,
    campaign: Campaign,
    principal: Principal | None = None,
    before: CampaignStatus | None = None,
    reason: str | None = None,
) -> Campaign:
    """Commit, then tell the workers (the grant and rate in Redis follow the database)."""
    await commit_now(session)
    if principal is not None:
        _log_transition(campaign, principal, before, reason)
    await control.publish_campaign(campaign)
    return campaign


async def _stopped(
    session: AsyncSession,
    control: Control,
    campaign: Campaign,
    principal: Principal,
    before: CampaignStatus | None,
    reason: str | None,
) -> Campaign:
    """Commit, close the campaign's gate and wait for the permits taken before. The stop
    is logged once committed, so it is on record even when the drain cannot be confirmed."""
    await commit_now(session)
    _log_transition(campaign, principal, before, reason, level=logging.WARNING)
    await control.stop([campaign], what=f"campaign {campaign.id} is {campaign.status}")
    return campaign
