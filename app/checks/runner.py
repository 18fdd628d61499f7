"""Running a campaign's wave checks and gating its waves on them.

Each tick runs, for every running campaign with a released wave, the checks whose interval
has passed since their last run during that wave, and stores what each saw
(`wave_check_result`). A check therefore runs every `interval_seconds` from its wave's
release until the next wave's release (the last wave's, until the campaign ends). The
engine then decides from the stored results alone (`gate`), under the campaign's lock.

The checks a campaign runs are the deployment's defaults (live campaigns only) followed by
its own. Remote sources are read outside any transaction and concurrently, each bounded by
`sources.TIMEOUT_SECONDS`; the results are stored under the campaign's row lock, only if
no other worker stored this round first, so a round is never counted twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import repository as audit_repo
from app.audit import service as audit
from app.auth.principal import SYSTEM
from app.campaigns import repository as campaigns_repo
from app.campaigns.models import Campaign, CampaignKind, CampaignWave
from app.campaigns.state import CampaignAction, CampaignStatus
from app.checks import repository, sources
from app.checks.evaluate import Decision, Outcome, decide, due, history_needed, judge

__all__ = [
    "ALLOW",
    "HOLD_EXTENDED",
    "PROMOTED",
    "Decision",
    "gate",
    "has_checks",
    "overridden",
    "promoted",
    "run_due",
]
from app.checks.spec import CheckSpec, load, unique_names
from app.db.session import unit_of_work
from app.settings import Settings

INVALID = (
    "wave checks: the campaign's checks, with the deployment's (WAVECAST_DEFAULT_CHECKS), no "
    "longer validate; nothing more is released"
)
# Results of the wave kept in the audit record of a pause.
AUDITED_RESULTS = 20
ALLOW = Decision(release=True, pause=None)


def checks_of(settings: Settings, campaign: Campaign) -> list[CheckSpec]:
    """The checks a campaign runs; ValueError when its stored ones no longer validate, or
    one is named like a deployment default added since the campaign was created (two checks
    of one name would share their results)."""
    defaults = settings.default_checks if campaign.kind == CampaignKind.live else []
    return unique_names([*defaults, *load(campaign.checks)])


def has_checks(settings: Settings, campaign: Campaign) -> bool:
    return bool(campaign.checks) or (
        bool(settings.default_checks) and campaign.kind == CampaignKind.live
    )


@dataclass
class _Round:
    campaign_id: uuid.UUID
    wave: int
    last: dict[str, datetime]
    outcomes: list[Outcome]
    remote: list[CheckSpec]


async def run_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    campaign_ids: Sequence[uuid.UUID],
    now: datetime,
) -> int:
    """Run every check that is due for these campaigns; the number of results stored."""
    rounds = []
    for campaign_id in campaign_ids:
        async with unit_of_work(sessionmaker) as session:
            planned = await _plan(session, settings, campaign_id, now)
        if planned is not None:
            rounds.append(planned)
    remote = [(r, c) for r in rounds for c in r.remote]
    if remote:
        async with httpx.AsyncClient() as client:
            readings = await asyncio.gather(*(sources.read_remote(client, c) for _r, c in remote))
        for (planned, check), reading in zip(remote, readings, strict=True):
            planned.outcomes.append(judge(check, reading))
    stored = 0
    for planned in rounds:
        async with unit_of_work(sessionmaker) as session:
            stored += await _store(session, planned, now)
    return stored


async def _plan(
    session: AsyncSession, settings: Settings, campaign_id: uuid.UUID, now: datetime
) -> _Round | None:
    campaign = await campaigns_repo.get(session, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.running:
        return None
    if campaign.current_wave < 0:
        return None
    if not has_checks(settings, campaign):
        return None
    try:
        checks = checks_of(settings, campaign)
    except ValueError:
        return None  # the engine pauses the campaign (`gate`)
    wave = campaign.current_wave
    last = await repository.last_runs(session, campaign_id, wave)
    planned = _Round(campaign_id, wave, last, [], [])
    for check in checks:
        ran = last.get(check.name)
        if not due(check.interval_seconds, None if ran is None else (now - ran).total_seconds()):
            continue
        if check.builtin is None:
            planned.remote.append(check)
            continue
        reading = await sources.read_builtin(session, check, campaign_id, wave, now)
        planned.outcomes.append(judge(check, reading))
    return planned if planned.outcomes or planned.remote else None


async def _store(session: AsyncSession, planned: _Round, now: datetime) -> int:
    campaign = await campaigns_repo.get(session, planned.campaign_id, lock=True)
    if campaign is None or campaign.status != CampaignStatus.running:
        return 0
    if campaign.current_wave != planned.wave:
        return 0  # paused or moved on while the sources answered
    if await repository.last_runs(session, planned.campaign_id, planned.wave) != planned.last:
        return 0  # another worker stored this round
    repository.add(session, planned.campaign_id, planned.wave, planned.outcomes, now)
    return len(planned.outcomes)


async def gate(
    session: AsyncSession,
    settings: Settings,
    campaign: Campaign,
    wave: CampaignWave,
    *,
    audit_pause: bool = True,
) -> Decision:
    """What the wave's checks say, from its results since its release, or since the
    operator's last resume (an operator who resumes has seen the results so far, as with
    the failure guardrail). An operator's promotion with an override lifts the wave's
    checks altogether. A pause is audited with the wave's latest results."""
    if not has_checks(settings, campaign):
        return ALLOW
    if await overridden(session, campaign.id, wave.index):
        return ALLOW
    try:
        checks = checks_of(settings, campaign)
    except ValueError:
        return Decision(release=False, pause=INVALID)
    since = wave.released_at or datetime.min.replace(tzinfo=UTC)
    resumed_at = await audit_repo.last_at(
        session,
        subject_type="campaign",
        subject_id=str(campaign.id),
        action=f"campaign.{CampaignAction.resume.value}",
    )
    if resumed_at is not None and resumed_at > since:
        since = resumed_at
    latest = {c.name: history_needed(c) for c in checks}
    outcomes = await repository.outcomes_since(session, campaign.id, wave.index, since, latest)
    decision = decide(checks, outcomes, hold_passed=True)
    if decision.pause is not None and audit_pause:
        audit.record(
            session,
            SYSTEM,
            "campaign.wave_checks_paused",
            subject_type="campaign",
            subject_id=campaign.id,
            reason=decision.pause,
            after={
                "wave": wave.index,
                "results": [_audited(o) for o in outcomes[-AUDITED_RESULTS:]],
            },
        )
    return decision


# An operator's promotion and hold extension are audit events, and the engine reads them
# back: the audit log is the record of both, so nothing else can disagree with it.
PROMOTED = "campaign.promoted"
HOLD_EXTENDED = "campaign.hold_extended"


async def _promotion(session: AsyncSession, campaign_id: uuid.UUID, wave: int) -> dict[str, Any]:
    """The operator's promotion of this wave, unless a hold extension came after it."""
    subject = {"subject_type": "campaign", "subject_id": str(campaign_id)}
    after = await audit_repo.last_after(session, **subject, action=PROMOTED)
    if not after or after.get("wave") != wave:
        return {}
    promoted_at = await audit_repo.last_at(session, **subject, action=PROMOTED)
    extended_at = await audit_repo.last_at(session, **subject, action=HOLD_EXTENDED)
    if extended_at is not None and promoted_at is not None and extended_at > promoted_at:
        return {}
    return dict(after)


async def promoted(session: AsyncSession, campaign_id: uuid.UUID, wave: int) -> bool:
    """Whether an operator skipped the rest of this wave's hold."""
    return bool(await _promotion(session, campaign_id, wave))


async def overridden(session: AsyncSession, campaign_id: uuid.UUID, wave: int) -> bool:
    """Whether an operator promoted this wave with an override of its checks."""
    return (await _promotion(session, campaign_id, wave)).get("override") is True


def _audited(outcome: Outcome) -> dict[str, object]:
    return {
        "check": outcome.name,
        "result": outcome.result.value,
        "value": outcome.value,
        "detail": outcome.detail,
    }
