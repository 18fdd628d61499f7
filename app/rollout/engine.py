"""The rollout engine: what the worker's once-a-second tick decides.

Every decision is made in the database under the campaign's row lock, so any number of
workers may tick at once: the second one finds the work done. Nothing sleeps: holds are
timestamps compared on the next tick.

A wave is released only when the previous one has finished (no open rows), its hold has
passed and its wave checks allow it (app.checks: every check has passed since the previous
wave's release with no failure since); a check that fails, or cannot be read, too often
pauses the campaign, audited with what it saw.

Wave membership. Wave k covers ⌈p_k·N⌉ devices of the campaign's audience (active devices
matching its rules), N being the audience's size when the wave is released; devices that
earlier waves reached and that are still in the audience count towards it, those that have
left since (invalid token, unregistered, no longer matching the rules) do not. So the wave
adds

    max(0, ⌈p_k·N⌉ − H)   H = devices of earlier waves still in the audience

devices, the first ones of the campaign's order of the audience that the ledger does not
hold yet (app.rollout.planner.reference_release is the executable statement of this), and a
last wave of 100 % reaches every device of the audience at its release. Waves are
cumulative: ledger rows are never removed and keep their wave, so earlier waves never
change, a device is sent at most once per campaign, and a re-run, a crash or a resume never
changes who was in an earlier wave.

How a release runs. The first send of a wave waits for one transaction, which never reads
the whole audience (that took about ten seconds at 10,000,000 devices). Three reads run
side by side on three connections: the next RELEASE_CHUNK_ROWS devices of the campaign's
order past its plan position (a range of the device (bucket, id) index,
app.delivery.ledger.plan_members), the sweep for devices that joined the audience behind
that position (a hash anti-join growing with the ledger, not the audience), and the
ledger's rows with the audience counted up to a bound (_count_bound): far enough to prove
the wave covers the ledger and a whole chunk, or the audience's exact size when the count
stops short of it. N ≥ the count and the whole ledger ≥ H, so the first chunk,
min(⌈p·count⌉ − |ledger|, RELEASE_CHUNK_ROWS) devices, is one the wave adds whatever N and
H are; it is committed and sending starts. The next tick counts N if the release only
bounded it (the wave's size is then the audience's a tick after its release; the first
chunk fits it unless devices left in between), counts H over the earlier waves' rows,
records the wave's size (`campaign.wave_sized`: target, held, members) and adds the rest, a
chunk per tick, from the audience as it is then. A wave does not finish before it holds its
members or the audience has none left to give.

Guard rule 4 (staging) is checked again before the release and before every later chunk, in
production: a campaign that reached the database by another road, its wave already
`sending`, still pauses with the guard's reason instead of releasing devices.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audiences.rules import RuleErrors
from app.audiences.service import audience_filter
from app.audit import repository as audit_repo
from app.audit import service as audit
from app.auth.principal import SYSTEM
from app.campaigns import repository as campaigns_repo
from app.campaigns import service as campaigns
from app.campaigns.models import Campaign, CampaignKind, CampaignWave, WaveStatus
from app.campaigns.state import CampaignAction, CampaignStatus
from app.checks import runner as wave_checks
from app.control.plane import Control, throttle_scope
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger
from app.delivery.ledger import DueIn
from app.delivery.models import DeliveryStatus
from app.delivery.timing_rules import campaign_quiet_hours
from app.guard.staging import check_staging
from app.killswitch import service as killswitch
from app.rollout import guardrail, opens_control
from app.rollout.planner import WaveSpec, cumulative_target, new_members_for_wave
from app.settings import Settings
from app.timing.schedule import due_at, parse_local_time, zone_of

log = logging.getLogger("wavecast.engine")

RECENTLY_FINISHED = timedelta(days=1)
# Grant re-derivation (sync_grants): a change this recent is published on every tick, as are
# the campaigns that can still send; the rest once per FULL_SYNC_SECONDS.
RECENTLY_CHANGED = timedelta(minutes=2)
FULL_SYNC_SECONDS = 60
_MAY_SEND = [
    CampaignStatus.scheduled.value,
    CampaignStatus.running.value,
    CampaignStatus.paused.value,
]
# A wave's first rows are committed on their own, so workers start sending them within a
# second or two even when the wave holds hundreds of thousands of devices; the rest follows
# on the next ticks, RELEASE_MORE_ROWS per tick (each transaction reads the audience in
# campaign order past what the ledger already holds, so fewer, larger chunks cost less).
RELEASE_CHUNK_ROWS = 5_000
RELEASE_MORE_ROWS = 50_000


@dataclass
class TickReport:
    reclaimed: int = 0
    started: list[uuid.UUID] = field(default_factory=list)
    released: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)
    paused: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    completed: list[uuid.UUID] = field(default_factory=list)
    sendable: list[uuid.UUID] = field(default_factory=list)


async def tick(
    sessionmaker: async_sessionmaker[AsyncSession],
    control: Control,
    settings: Settings,
    now: datetime | None = None,
) -> TickReport:
    now = now or utcnow()
    report = TickReport()
    async with unit_of_work(sessionmaker) as session:
        report.reclaimed = await ledger.reclaim_expired(
            session, now=now, max_attempts=settings.max_attempts
        )
        engaged = await killswitch.is_engaged(session)
        due = [] if engaged else await campaigns_repo.due_scheduled(session, now)
        running = await campaigns_repo.ids_with_status(session, CampaignStatus.running)
    for campaign_id in due:
        if await _start_scheduled(sessionmaker, control, campaign_id, now):
            report.started.append(campaign_id)
            running.append(campaign_id)
    # Before the campaigns move: this tick's decisions see this tick's results.
    await wave_checks.run_due(sessionmaker, settings, running, now)
    for campaign_id in running:
        await advance(sessionmaker, control, settings, campaign_id, now, report)
    # Before the grants are published: they carry the opens budget's rates of this tick.
    await opens_control.steer(sessionmaker, settings, now)
    await sync_grants(sessionmaker, control, now)
    report.sendable = await sendable(sessionmaker, now)
    return report


async def sendable(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime
) -> list[uuid.UUID]:
    """Running campaigns with rows a send job could claim now."""
    async with unit_of_work(sessionmaker) as session:
        return [
            campaign_id
            for campaign_id in await campaigns_repo.ids_with_status(session, CampaignStatus.running)
            if await ledger.has_claimable(session, campaign_id, now)
        ]


async def _start_scheduled(
    sessionmaker: async_sessionmaker[AsyncSession],
    control: Control,
    campaign_id: uuid.UUID,
    now: datetime,
) -> bool:
    async with unit_of_work(sessionmaker) as session:
        campaign = await campaigns.get(session, campaign_id, lock=True)
        if campaign.status != CampaignStatus.scheduled:
            return False
        campaigns.transition(
            session, SYSTEM, campaign, CampaignAction.start, reason="start_at reached", now=now
        )
    campaigns.log_transition(
        campaign.id,
        SYSTEM.actor,
        CampaignStatus.scheduled,
        CampaignStatus.running,
        "start_at reached",
    )
    await control.publish_campaign(campaign)
    return True


async def advance(
    sessionmaker: async_sessionmaker[AsyncSession],
    control: Control,
    settings: Settings,
    campaign_id: uuid.UUID,
    now: datetime,
    report: TickReport,
) -> None:
    """Move one running campaign forward by at most one step."""
    async with unit_of_work(sessionmaker) as session:
        campaign = await campaigns.get(session, campaign_id, lock=True)
        if campaign.status != CampaignStatus.running:
            return
        waves = await campaigns.waves(session, campaign.id)
        outcome = await _step(sessionmaker, session, settings, campaign, waves, now)
    if outcome is None:
        return
    kind, detail = outcome
    if kind == "released":
        report.released.append((campaign_id, campaign.current_wave, int(detail)))
    elif kind == "paused":
        report.paused.append((campaign_id, detail))
        campaigns.log_transition(
            campaign_id,
            SYSTEM.actor,
            CampaignStatus.running,
            CampaignStatus.paused,
            detail,
            level=logging.WARNING,
        )
        await control.publish_campaign(campaign)
    elif kind == "completed":
        report.completed.append(campaign_id)
        campaigns.log_transition(
            campaign_id, SYSTEM.actor, CampaignStatus.running, CampaignStatus.completed, detail
        )
        await control.publish_campaign(campaign)
        await control.throttle.forget(throttle_scope(campaign_id))


async def _step(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    settings: Settings,
    campaign: Campaign,
    waves: list[CampaignWave],
    now: datetime,
) -> tuple[str, str] | None:
    if campaign.start_at is not None and campaign.start_at > now:
        return None
    current = campaign.current_wave
    if current >= 0:
        wave = waves[current]
        checks = await wave_checks.gate(session, settings, campaign, wave)
        if checks.pause:
            _pause(session, campaign, checks.pause, now)
            return "paused", checks.pause
        if wave.status == WaveStatus.sending:
            # Nothing here reads the whole wave each second (a wave of millions of rows took
            # most of a second to count, every second): the guardrail counts the failures and
            # the sends up to the number that clears them; a wave known to hold its members is
            # not counted for the release; whether a row is still open is the first one found.
            tripped = await _guardrail(session, campaign, wave)
            if tripped:
                _pause(session, campaign, tripped, now)
                return "paused", tripped
            # Before every chunk, not only at release: a wave may have reached the database
            # already `sending` without ever passing a release here.
            refusal = _worker_guard(settings, campaign, waves)
            if refusal:
                _pause(session, campaign, refusal, now)
                return "paused", refusal
            # The rest of a released wave, a chunk per tick; it finishes only once it holds
            # its members (or the audience has no more devices to give).
            if not _FILLED.holds(campaign.id, wave):
                added = await _release_chunk(
                    session,
                    campaign,
                    wave,
                    now,
                    RELEASE_MORE_ROWS,
                    _due_in(settings, campaign, wave),
                )
                if added > 0:
                    return "released", str(added)
            # Only this tick, under the campaign's lock, adds rows, and only by the release
            # above; a row that is done never opens again.
            if await ledger.any_open_in_wave(session, campaign.id, current):
                return None
            counts = await ledger.counts_in_wave(session, campaign.id, current)
            _FILLED.forget(campaign.id, wave)
            wave.status = WaveStatus.finished
            wave.finished_at = now
            session.add(wave)
            audit.record(
                session,
                SYSTEM,
                "campaign.wave_finished",
                subject_type="campaign",
                subject_id=campaign.id,
                after={"wave": current, "counts": counts},
            )
        if current + 1 >= len(waves):
            campaigns.transition(
                session,
                SYSTEM,
                campaign,
                CampaignAction.complete,
                reason="every wave finished",
                now=now,
            )
            return "completed", "every wave finished"
        held = campaigns.hold_until(wave)
        # An operator may skip the rest of a hold (POST .../promote); never the checks,
        # unless the promotion overrode them (`wave_checks.gate` reads that), and never, in
        # production, the policy's minimum hold for a live campaign.
        if held is not None and held > now:
            floor = _policy_hold_until(settings, campaign, wave)
            if (floor is not None and floor > now) or not await wave_checks.promoted(
                session, campaign.id, current
            ):
                return None
        if not checks.release:
            # Held until every check has passed since the release, with no failure since.
            return None
    refusal = _worker_guard(settings, campaign, waves)
    if refusal:
        _pause(session, campaign, refusal, now)
        return "paused", refusal
    try:
        added = await _release(sessionmaker, session, settings, campaign, waves[current + 1], now)
    except RuleErrors:
        reason = "the campaign's audience rules no longer parse; nothing was released"
        _pause(session, campaign, reason, now)
        return "paused", reason
    return "released", str(added)


async def _last_resume(session: AsyncSession, campaign_id: uuid.UUID) -> datetime | None:
    return await audit_repo.last_at(
        session,
        subject_type="campaign",
        subject_id=str(campaign_id),
        action=f"campaign.{CampaignAction.resume.value}",
    )


async def _guardrail(session: AsyncSession, campaign: Campaign, wave: CampaignWave) -> str | None:
    """Whether the wave's permanent failures trip the guardrail: its failures, and its sends
    counted only up to the number with which those failures do not trip it."""
    resumed_at = await _last_resume(session, campaign.id)
    if resumed_at is not None and wave.released_at and resumed_at > wave.released_at:
        # An operator who resumes a paused wave has seen its failures so far: the
        # guardrail judges what failed since, or it would trip again at once.
        failed = await ledger.failed_since(session, campaign.id, wave.index, resumed_at)
    else:
        failed = await ledger.count_with_status(
            session, campaign.id, wave.index, DeliveryStatus.failed
        )
    threshold = Decimal(campaign.failure_threshold_percent)
    clear = guardrail.sends_that_clear(failed=failed, threshold_percent=threshold)
    if clear == 0:
        return None
    sent = await ledger.count_with_status(
        session, campaign.id, wave.index, DeliveryStatus.sent, upto=clear
    )
    return guardrail.tripped(
        failed=failed,
        sent=sent,
        threshold_percent=threshold,
        wave_number=campaign.current_wave + 1,
    )


def _policy_hold_until(
    settings: Settings, campaign: Campaign, wave: CampaignWave
) -> datetime | None:
    """In production, the earliest a live campaign's next wave may follow this one whatever an
    operator promotes: the staging policy's minimum hold after the wave finished."""
    if not settings.is_production or campaign.kind != CampaignKind.live:
        return None
    if wave.finished_at is None:
        return None
    return wave.finished_at + timedelta(seconds=min(settings.min_hold_seconds, wave.hold_seconds))


def _worker_guard(settings: Settings, campaign: Campaign, waves: list[CampaignWave]) -> str | None:
    """Guard rule 4 again before every release and every release chunk: data may have
    reached the database by any road, a wave already `sending` included."""
    if not settings.is_production or campaign.kind != CampaignKind.live:
        return None
    problems = check_staging(
        [WaveSpec(Decimal(w.percent), w.hold_seconds) for w in waves],
        max_first_wave_percent=settings.max_first_wave_percent,
        min_hold_seconds=settings.min_hold_seconds,
    )
    if not problems:
        return None
    return "environment guard: " + "; ".join(p.message for p in problems)


def _pause(session: AsyncSession, campaign: Campaign, reason: str, now: datetime) -> None:
    # Logged by `advance` once committed, as every transition is.
    campaigns.transition(
        session, SYSTEM, campaign, CampaignAction.auto_pause, reason=reason, now=now
    )


async def _release(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    settings: Settings,
    campaign: Campaign,
    wave: CampaignWave,
    now: datetime,
) -> int:
    audience = audience_filter(campaign.audience_rules, now=now)
    percent = Decimal(wave.percent)
    position = _plan_position(campaign)
    sweep = campaign.plan_swept_wave != wave.index
    # The first chunk's devices (read from the campaign's plan position, in the release's
    # transaction) and a lower bound of the audience (read beside it on a second
    # connection, on PostgreSQL; SQLite has one writer and gains nothing from a second
    # reader). The chunk is cut to size once the bound is known (candidates come in order,
    # so their prefix is exactly what one INSERT ... SELECT ... LIMIT would have added).
    candidates, (in_ledger, counted, bound) = await _candidates_and_bound(
        sessionmaker, session, campaign, audience, percent, position, sweep
    )
    # N is at least `counted`, exactly that when the count stopped short of its bound, so
    # ⌈p·counted⌉ never exceeds the wave. The whole ledger stands in for the devices it
    # still covers (at least as many): what this leaves out, the next tick adds once it
    # has counted them (_wave_members).
    lower = cumulative_target(percent, counted)
    take = min(new_members_for_wave(lower, in_ledger), RELEASE_CHUNK_ROWS)
    exact = counted < bound
    size = counted if exact else None
    target = lower if exact else None
    wave.released_at = now
    taken = candidates[:take]
    added = await ledger.add_members(
        session,
        campaign_id=campaign.id,
        wave=wave.index,
        device_ids=[c.device_id for c in taken],
        now=now,
        due_in=_due_in(settings, campaign, wave),
    )
    behind = sum(1 for c in candidates if c.behind)
    _store_plan(
        campaign,
        ledger.plan_position(taken, position),
        swept=not sweep or (behind < RELEASE_CHUNK_ROWS and take >= behind),
        wave=wave.index,
    )
    wave.status = WaveStatus.sending
    wave.audience_size = size
    wave.target_count = target
    session.add(wave)
    campaign.current_wave = wave.index
    campaign.updated_at = now
    session.add(campaign)
    after: dict[str, object] = {
        "wave": wave.index,
        "percent": str(wave.percent),
        "audience_size": size,
        "target": target,
        "added": added,
    }
    if not exact:
        after["audience_at_least"] = counted
    audit.record(
        session,
        SYSTEM,
        "campaign.wave_released",
        subject_type="campaign",
        subject_id=campaign.id,
        after=after,
    )
    log.info(
        "wave released",
        extra={
            "campaign_id": str(campaign.id),
            "wave": wave.index,
            "audience_size": size if exact else f">= {counted}",
            "added": added,
        },
    )
    return added


# The most audience devices a release counts before its first chunk, unless fewer would
# not bound the wave above what the ledger holds (a later wave over a large ledger): then
# it counts as far as a whole first chunk needs. A bounded read, a few hundred milliseconds
# per million devices, where counting ten million took seconds; what it leaves unknown, the
# next tick counts (_size_wave).
RELEASE_COUNT_ROWS = 1_000_000


def _count_bound(percent: Decimal, in_ledger: int) -> int:
    """How many audience devices a release counts at most. A wave of p % covers X devices
    once p·N > X − 1, that is from N = ⌊(X − 1)·100/p⌋ + 1 on: counting that many proves
    ⌈p·N⌉ ≥ X without counting N."""

    def needed(devices: int) -> int:
        return math.floor(Fraction(devices - 1) * 100 / Fraction(percent)) + 1

    if percent <= 0:
        return 0
    whole_chunk = needed(in_ledger + RELEASE_CHUNK_ROWS)
    if needed(in_ledger + 1) > RELEASE_COUNT_ROWS:
        return whole_chunk
    return min(whole_chunk, RELEASE_COUNT_ROWS)


def _plan_position(campaign: Campaign) -> ledger.PlanPosition | None:
    if campaign.plan_bucket is None or campaign.plan_device_id is None:
        return None
    return ledger.PlanPosition(campaign.plan_bucket, campaign.plan_device_id)


def _store_plan(
    campaign: Campaign, position: ledger.PlanPosition | None, *, swept: bool, wave: int
) -> None:
    """Written with the ledger rows, in their transaction, under the campaign's lock: the
    position never runs ahead of (or behind) what the ledger holds."""
    campaign.plan_bucket = position.bucket if position else None
    campaign.plan_device_id = position.device_id if position else None
    if swept:
        campaign.plan_swept_wave = wave


async def _candidates_and_bound(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    campaign: Campaign,
    audience: ColumnElement[bool],
    percent: Decimal,
    position: ledger.PlanPosition | None,
    sweep: bool,
) -> tuple[list[ledger.Candidate], tuple[int, int, int]]:
    """The next RELEASE_CHUNK_ROWS devices for the ledger and (ledger rows, audience
    counted, bound): the ledger's rows, then the audience counted up to `_count_bound`.

    On PostgreSQL three reads run side by side, each on its own connection: the devices
    past the plan position (in the release's transaction, under the campaign's lock), the
    sweep behind it and the bounded count. The other two need no lock of their own: only a
    holder of the campaign's lock adds its ledger rows. SQLite has one writer and gains
    nothing from more readers: one after the other, the plain query."""
    rows = RELEASE_CHUNK_ROWS

    async def bound(reader: AsyncSession) -> tuple[int, int, int]:
        in_ledger = await ledger.count_in_ledger(reader, campaign.id)
        limit = _count_bound(percent, in_ledger)
        return in_ledger, await ledger.count_audience_upto(reader, audience, limit), limit

    if session.get_bind().dialect.name != "postgresql":
        candidates = await ledger.plan_members(
            session,
            campaign_id=campaign.id,
            rotation=campaign.rotation,
            audience=audience,
            limit=rows,
            position=position,
            sweep_behind=sweep,
        )
        return candidates, await bound(session)

    async def beside() -> tuple[int, int, int]:
        async with sessionmaker() as reader:
            return await bound(reader)

    async def behind() -> list[ledger.Candidate]:
        if position is None or not sweep:
            return []
        async with sessionmaker() as reader, reader.begin():
            return await ledger.behind_members(
                reader,
                campaign_id=campaign.id,
                rotation=campaign.rotation,
                audience=audience,
                limit=rows,
                position=position,
            )

    ahead = ledger.ahead_members(
        session,
        campaign_id=campaign.id,
        rotation=campaign.rotation,
        audience=audience,
        limit=rows,
        position=position,
    )
    swept, past, counts = await asyncio.gather(behind(), ahead, beside())
    # Every device behind the position comes before every one past it.
    return (swept + past)[:rows], counts


def _due_in(settings: Settings, campaign: Campaign, wave: CampaignWave) -> DueIn | None:
    """For a local-time campaign: when each device of a released wave is due, from its time
    zone (the next occurrence of the campaign's local time after the wave's release, moved
    out of the device's quiet hours). Computed once per zone."""
    if campaign.local_time is None or wave.released_at is None:
        return None
    local = parse_local_time(campaign.local_time)
    quiet = campaign_quiet_hours(settings, campaign)
    released = wave.released_at
    default = settings.default_zone

    @functools.cache
    def due(zone: str | None) -> datetime:
        return due_at(
            released_at=released, zone=zone_of(zone, default), local_time=local, quiet=quiet
        )

    return due


class _FilledWaves:
    """The sending waves this process has seen hold their members. A wave's members are
    decided once and its rows are never removed while its campaign runs, so a wave that held
    them holds them for good: the tick no longer counts its rows to see whether it must add
    more. Only a fact that cannot become false is kept, never a count, so a tick in another
    process meanwhile cannot make it wrong. Bounded: forgetting costs one count."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self._waves: set[tuple[uuid.UUID, int, datetime | None]] = set()

    @staticmethod
    def _key(campaign_id: uuid.UUID, wave: CampaignWave) -> tuple[uuid.UUID, int, datetime | None]:
        return campaign_id, wave.index, wave.released_at

    def holds(self, campaign_id: uuid.UUID, wave: CampaignWave) -> bool:
        return self._key(campaign_id, wave) in self._waves

    def add(self, campaign_id: uuid.UUID, wave: CampaignWave) -> None:
        if len(self._waves) >= self.LIMIT:
            self._waves.clear()
        self._waves.add(self._key(campaign_id, wave))

    def forget(self, campaign_id: uuid.UUID, wave: CampaignWave) -> None:
        self._waves.discard(self._key(campaign_id, wave))


_FILLED = _FilledWaves()


async def _release_chunk(
    session: AsyncSession,
    campaign: Campaign,
    wave: CampaignWave,
    now: datetime,
    rows: int,
    due_in: DueIn | None = None,
) -> int:
    """Add the next chunk of a released wave's devices; 0 once the wave holds its members
    (or the audience has no more devices to give)."""
    if wave.released_at is None:
        return 0
    try:
        audience = audience_filter(campaign.audience_rules, now=now)
    except RuleErrors:
        return 0
    counted, target = None, wave.target_count
    if target is None:
        counted, target = await _size_wave(session, wave, audience)
    members = await _wave_members(session, campaign.id, wave.index, target, audience, counted)
    held = await ledger.count_in_wave(session, campaign.id, wave.index)
    missing = members - held
    if missing <= 0:
        _FILLED.add(campaign.id, wave)
        return 0
    position = _plan_position(campaign)
    planned = await ledger.add_wave_members(
        session,
        campaign_id=campaign.id,
        rotation=campaign.rotation,
        wave=wave.index,
        audience=audience,
        count=min(missing, rows),
        now=now,
        due_in=due_in,
        position=position,
        sweep_behind=campaign.plan_swept_wave != wave.index,
    )
    _store_plan(campaign, planned.position, swept=planned.swept, wave=wave.index)
    session.add(campaign)
    return planned.added


async def _size_wave(
    session: AsyncSession, wave: CampaignWave, audience: ColumnElement[bool]
) -> tuple[int, int]:
    """N for a wave whose release only bounded it (a large audience): counted by the first
    tick after the release, before any device beyond the first chunk is added. The first
    chunk fits whatever this finds, unless devices left the audience in between."""
    size = await ledger.count_audience(session, audience)
    wave.audience_size = size
    target = cumulative_target(Decimal(wave.percent), size)
    wave.target_count = target
    session.add(wave)
    return size, target


async def _wave_members(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    wave: int,
    target: int,
    audience: ColumnElement[bool],
    counted: int | None = None,
) -> int:
    """How many devices a released wave adds: its target, ⌈p·N⌉, minus the devices of
    earlier waves still in the audience. Counted by the first tick after the release (or
    the first to see a wave that reached the database by another road) and recorded with
    the decision (with N, `counted`, when that tick counted it too); later ticks read the
    record. Both run under the campaign's lock, so a wave is sized once."""
    recorded = await _recorded_members(session, campaign_id, wave)
    if recorded is not None:
        # However the record reads, a wave never adds more than its share.
        return max(0, min(recorded, target))
    held = await ledger.count_held(
        session, campaign_id=campaign_id, audience=audience, before_wave=wave
    )
    members = new_members_for_wave(target, held)
    after: dict[str, object] = {"wave": wave, "target": target, "held": held, "members": members}
    if counted is not None:
        after["audience_size"] = counted
    audit.record(
        session,
        SYSTEM,
        "campaign.wave_sized",
        subject_type="campaign",
        subject_id=campaign_id,
        after=after,
    )
    return members


async def _recorded_members(session: AsyncSession, campaign_id: uuid.UUID, wave: int) -> int | None:
    """The members `_wave_members` recorded for this wave, if it has."""
    after = await audit_repo.last_after(
        session, subject_type="campaign", subject_id=str(campaign_id), action="campaign.wave_sized"
    )
    if not after or after.get("wave") != wave:
        return None
    members = after.get("members")
    return members if isinstance(members, int) else None


async def sync_grants(
    sessionmaker: async_sessionmaker[AsyncSession], control: Control, now: datetime
) -> None:
    """Re-derive the Redis grants from PostgreSQL (after a Redis restart, or a stop whose
    answer could not reach Redis). Grants are versioned, so this never re-opens a campaign
    that was stopped after these rows were read.

    Every tick: the switch, every campaign that can still send (scheduled, running, paused)
    and every campaign changed in the last RECENTLY_CHANGED. Every campaign that finished in
    the last RECENTLY_FINISHED as well, but only once per FULL_SYNC_SECONDS across all
    workers, and at once when Redis has lost its data (the marker that spaces full syncs is
    lost with it): a tick's cost follows the campaigns in flight, not a day's campaigns."""
    full = await control.claim_full_sync(FULL_SYNC_SECONDS)
    finished = col(Campaign.finished_at)
    if full:
        wanted = finished.is_(None) | (finished > now - RECENTLY_FINISHED)
    else:
        wanted = col(Campaign.status).in_(_MAY_SEND) | (
            col(Campaign.updated_at) > now - RECENTLY_CHANGED
        )
    async with unit_of_work(sessionmaker) as session:
        switch = await killswitch.get_switch(session)
        rows = await campaigns_repo.changed(session, wanted)
    await control.publish_switch(switch)
    for campaign in rows:
        if campaign.status != CampaignStatus.draft:
            await control.publish_campaign(campaign)
