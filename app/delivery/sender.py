"""Sending one campaign's queued rows: the loop every `send_campaign` job runs.

Once per job, before the loop, the guard's send-time check (`guard.send_check`): data may
have reached the database by another road, and an override counts only for the content it
was given for. Then one iteration per batch, and why it is in this order:
1. size the batch from the campaign's current rate and its provider's cap (as the last
   batch's admission read them), and claim that many rows under a lease (only rows of a
   running campaign are claimable; the claim re-applies the audience, so a device that
   left it is cancelled there);
2. decide each row's fate before any provider sees it (`outcomes.pre_send_outcomes`):
   inactive devices are cancelled, non-test devices are blocked (of a test campaign, and of
   every campaign outside production with a real provider), stale
   notifications expire;
3. admit the rest, in one Redis round trip (`app.control.admit`): the gate's grants open
   (fails when the campaign or everything was stopped, or Redis lost them), throttle
   tokens reserved on the campaign's rate and the provider's cap at the rates in force now
   (rows claimed at a rate cut since go back untouched), and the gate permit taken when
   they are due within CHECKS_LEAD_SECONDS (else it is taken on its own that long before);
4. ask the database whether the campaign may send — the last word, under the permit;
5. wait until the tokens are due, send under the permit's fence (each request looks at it
   right before it starts, so a stop closes a batch that a slow provider is still working
   through), release the permit, record every outcome under the lease.
If any step says stop, the claimed rows are given back untouched (not an attempt).

Once rows are claimed, the rest of their batch runs to its record even when the job is
cancelled (arq's timeout, a shutdown): a provider's answer is never dropped between the
call and the record, where it would come back with the lease and be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audiences.rules import RuleErrors
from app.audiences.service import audience_filter
from app.campaigns import commands
from app.campaigns import repository as campaigns_repo
from app.campaigns.models import Campaign, CampaignKind
from app.campaigns.schemas import Content
from app.campaigns.state import CampaignStatus
from app.control.admit import Admission
from app.control.gate import GateClosed
from app.control.plane import Control, paced, provider_scope, throttle_scope
from app.control.throttle import RatePaused, RateUnknown
from app.control.throttle_math import batch_size_for_rate, tightest_rate
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger
from app.delivery.ledger import Claimed, Outcome
from app.delivery.models import DeliveryStatus
from app.delivery.outcomes import give_back, not_now, outcome_of, pre_send_outcomes
from app.delivery.providers.base import (
    STOPPED,
    Batch,
    Message,
    Provider,
    ResultKind,
    SendResult,
    StartFence,
    timed_out,
)
from app.delivery.timing_rules import SendTiming, send_timing, with_time_left
from app.guard.send_check import send_refusal
from app.logging import campaign_var, wave_var
from app.ops.worker_metrics import PROVIDER_LATENCY, THROTTLE_WAIT, count_outcomes
from app.rollout.planner import WaveSpec
from app.settings import Settings
from app.timing.caps import FrequencyCap

log = logging.getLogger("wavecast.sender")


@dataclass
class SenderDeps:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    control: Control
    providers: Callable[[Message], Provider]
    worker_id: str
    # Set when the worker is stopping (SIGTERM, or its connection to the queue ended): send
    # loops start no new batch; the batch in flight still ends, recorded. The campaign's
    # other rows stay claimable, and the next tick asks another worker to send them.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class PumpReport:
    batches: int = 0
    sent: int = 0
    other: int = 0
    stopped_because: str | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    # Wall seconds this loop spent in each stage (STAGES), for the delivery benchmark's
    # breakdown and for logs: where a send loop's time goes.
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started)


@dataclass
class _Pace:
    """What a send loop learnt from its last batch's admission, so the next batch is sized
    without a round trip of its own before its claim."""

    # The campaign's rate as the last admission read it (None: unlimited); unknown until
    # the loop's first batch reads it.
    rate: float | None = None
    known: bool = False
    # The tightest provider-wide cap of the last batch's providers: a claim sized to it is
    # never cut by the provider's reservation (rows claimed and given back cost a write).
    caps: float | None = None
    # The last admission took its permit (its sends were due at once): the database's last
    # word is then asked beside the next admission rather than after it.
    immediate: bool = False


# The stages of one batch, in order: read the rate and claim rows; wait on the campaign's and
# the provider's throttles; gate permit and the database's last word; the provider call
# (payload building included); recording outcomes.
STAGES = ("claim", "throttle", "checks", "provider", "record")


# How long past a batch's deadline a provider may take to hand back its answers (the
# settings' lease margin covers it).
PROVIDER_GRACE_SECONDS = 1.0


# Why a send loop ended with rows possibly left to send: its time was up, not its work.
OUT_OF_BUDGET = "budget"
WORKER_STOPPING = "worker stopping"


class _Stop(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def pump(
    deps: SenderDeps, campaign_id: uuid.UUID, *, budget_seconds: float = 30.0
) -> PumpReport:
    """Send this campaign's claimable rows until none are left, it stops, or time is up."""
    campaign_var.set(str(campaign_id))
    report = PumpReport()
    async with unit_of_work(deps.sessionmaker) as session:
        campaign = await campaigns_repo.get(session, campaign_id)
        wave_rows = await campaigns_repo.waves(session, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.running:
        report.stopped_because = "not running"
        return report
    # The guard's last word (rules 2 and 4): the row may have reached the database by another
    # road, and an override counts only for the content it was given for.
    refusal = send_refusal(
        deps.settings, campaign, [WaveSpec(w.percent, w.hold_seconds) for w in wave_rows]
    )
    if refusal:
        await commands.auto_pause(deps.sessionmaker, deps.control, campaign_id, refusal)
        report.stopped_because = "guard"
        return report
    content = Content.model_validate(campaign.content)
    kind = CampaignKind(campaign.kind)
    timing = send_timing(deps.settings, campaign, content.ttl_seconds, wave_rows)
    deadline = time.monotonic() + budget_seconds
    pace = _Pace(caps=_tightest_cap(deps.settings, PROVIDERS_CAPPED))
    try:
        while time.monotonic() < deadline:
            if deps.stopping.is_set():
                report.stopped_because = WORKER_STOPPING
                break
            if not await _one_batch(deps, campaign, kind, content, timing, report, pace):
                report.stopped_because = report.stopped_because or "drained"
                break
        else:
            report.stopped_because = OUT_OF_BUDGET
    except _Stop as stop:
        report.stopped_because = stop.why
    return report


async def _republish(deps: SenderDeps, campaign_id: uuid.UUID) -> None:
    """Redis lost the campaign's rate (a restart) or never had it: write the rate and grant
    again from the database's current row, never from the copy this job loaded when it
    started (the campaign may have been stopped since)."""
    async with unit_of_work(deps.sessionmaker) as session:
        current = await campaigns_repo.get(session, campaign_id)
    if current is None or current.status != CampaignStatus.running:
        raise _Stop("not running")
    await deps.control.publish_campaign(current)


async def _batch_size(deps: SenderDeps, campaign_id: uuid.UUID, pace: _Pace | None = None) -> int:
    """How many rows to claim now: a slice of the campaign's current rate, and of the
    provider caps its rows were charged to last. The rate is read from Redis by the loop's
    first batch; after that, each batch's admission brings it back, so a throttle change
    sizes the next claim (and the admission itself, sized in Redis, applies a cut to the
    batch it admits: rows claimed at the old rate go back untouched)."""
    pace = pace or _Pace()
    if not pace.known:
        scope = throttle_scope(campaign_id)
        try:
            pace.rate = await deps.control.throttle.get_rate(scope)
        except RateUnknown:
            await _republish(deps, campaign_id)
            pace.rate = await deps.control.throttle.get_rate(scope)
        pace.known = True
    if pace.rate == 0:
        raise _Stop("rate is zero")
    return batch_size_for_rate(
        tightest_rate([pace.rate, pace.caps]), max_batch=deps.settings.chunk_size
    )


# The checks before a batch leaves (provider caps, the gate's permit, the database's last
# word) run this long before its tokens are due, during the wait; between the due instant
# and the send there is then only a sleep. Checks that sat after the wait made each batch
# late by their own, varying, time: late batches bunched with punctual ones and a 1 s window
# held 108 % of the rate. The permit is held this much longer, so a stop's answer waits at
# most this much more for it.
CHECKS_LEAD_SECONDS = 0.2


async def _admit(
    deps: SenderDeps, campaign_id: uuid.UUID, scopes: Sequence[str], n: int, *, lead: float
) -> Admission:
    """Admit up to `n` sends on `scopes` (the campaign's first, then the provider caps the
    batch is charged to): the grants open, the sends reserved at the rates as they are in
    Redis now, and the permit taken when they are due within `lead` (`app.control.admit`),
    all in one round trip. A rate Redis lost is written again from the database (the
    campaign's) or the settings (a provider's cap) and the admission asked again; while a
    provider's Retry-After block holds, it waits and asks again. Raises `_Stop` when a grant
    is closed or the rate is zero, with nothing reserved."""
    names = {provider_scope(name): name for name in PROVIDERS_CAPPED}
    while True:
        try:
            admission = await deps.control.admit(
                campaign_id,
                scopes,
                n,
                max_batch=deps.settings.chunk_size,
                lead=lead,
                permit_seconds=deps.control.watch.permit_seconds,
            )
        except RateUnknown as exc:
            for scope in exc.scopes:
                if scope in names:
                    await deps.control.throttle.set_rate(
                        scope, provider_cap(deps.settings, names[scope])
                    )
                else:
                    await _republish(deps, campaign_id)
            continue
        except RatePaused as exc:
            raise _Stop("rate is zero") from exc
        except GateClosed as exc:
            raise _Stop(f"gate closed ({exc.refusal.name})") from exc
        if admission.grant.n > 0:
            return admission
        await asyncio.sleep(admission.grant.wait)


async def _until_due(due: float) -> None:
    left = due - time.monotonic()
    if left > 0:
        await asyncio.sleep(left)


# The providers with a provider-wide cap (`provider_cap`).
PROVIDERS_CAPPED = ("fcm", "apns")


def provider_cap(settings: Settings, provider: str) -> float | None:
    """The provider-wide rate, paced as every rate is (`control.paced`)."""
    cap = {
        "fcm": settings.fcm_max_per_second,
        "apns": settings.apns_max_per_second,
    }.get(provider)
    return None if cap is None else paced(float(cap))


def _tightest_cap(settings: Settings, providers: Iterable[str]) -> float | None:
    return tightest_rate(provider_cap(settings, name) for name in providers)


async def _one_batch(
    deps: SenderDeps,
    campaign: Campaign,
    kind: CampaignKind,
    content: Content,
    timing: SendTiming,
    report: PumpReport,
    pace: _Pace,
) -> bool:
    """One claim → admit → send → record round; False when there is nothing left."""
    settings = deps.settings
    with report.timing("claim"):
        try:
            n = await _batch_size(deps, campaign.id, pace)
        except RedisError as exc:
            raise _Stop("redis unreachable") from exc
        lease = uuid.uuid4()
        now = utcnow()
        # The audience as it is now: a device that left it since its wave was released (a
        # consent tag removed, an edit) is not sent; the claim cancels its row. Parsed again
        # per batch, so `last_seen` rules move with the clock.
        try:
            audience = audience_filter(campaign.audience_rules, now=now)
        except RuleErrors:
            reason = "the campaign's audience rules no longer parse; nothing was sent"
            await commands.auto_pause(deps.sessionmaker, deps.control, campaign.id, reason)
            raise _Stop("audience rules") from None
        async with unit_of_work(deps.sessionmaker) as session:
            rows = await ledger.claim(
                session,
                campaign_id=campaign.id,
                limit=n,
                lease_token=lease,
                lease_until=now + timedelta(seconds=settings.lease_seconds),
                now=now,
                audience=audience,
            )
    if not rows:
        return False
    wave_var.set(max(r.wave for r in rows))
    report.batches += 1
    # The rows are leased to this job now: the batch runs to its record whatever happens to
    # the job meanwhile.
    batch = asyncio.ensure_future(
        _send_and_record(
            deps,
            campaign,
            kind,
            content,
            timing,
            rows,
            lease,
            now,
            report,
            pace=pace,
        )
    )
    try:
        stop = await asyncio.shield(batch)
    except asyncio.CancelledError:
        while not batch.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(batch)
        raise
    if stop is not None:
        raise _Stop(stop)
    return True


async def _send_and_record(
    deps: SenderDeps,
    campaign: Campaign,
    kind: CampaignKind,
    content: Content,
    timing: SendTiming,
    rows: Sequence[Claimed],
    lease: uuid.UUID,
    claimed_at: datetime,
    report: PumpReport,
    *,
    pace: _Pace | None = None,
) -> str | None:
    """Send what may be sent of a claimed batch and record every row's outcome under its
    lease; returns why the send loop must stop, or None."""
    to_send, decided = pre_send_outcomes(
        kind, rows, claimed_at, test_devices_only=deps.settings.test_devices_only, timing=timing
    )
    taken: set[int] = set()
    if to_send and timing.cap is not None:
        try:
            to_send, capped, taken = await _take_cap_slots(deps, campaign, to_send, timing.cap)
        except RedisError:
            await _record(deps, lease, [*decided, *(give_back(r) for r in to_send)], report)
            return "redis unreachable"
        decided += capped
    outcomes = list(decided)
    stop: str | None = None
    try:
        if to_send:
            sent, stop = await _send(deps, campaign, content, timing, to_send, report, pace)
            outcomes += sent
    except RedisError:
        outcomes += [give_back(r) for r in to_send]
        stop = "redis unreachable"
    except _Stop as exc:
        outcomes += [give_back(r) for r in to_send]
        stop = exc.why
    if taken:
        await _return_cap_slots(deps, campaign, rows, outcomes, taken)
    await _record(deps, lease, outcomes, report)
    return stop


async def _take_cap_slots(
    deps: SenderDeps, campaign: Campaign, rows: Sequence[Claimed], cap: FrequencyCap
) -> tuple[list[Claimed], list[Outcome], set[int]]:
    """Take each device's frequency-cap slot for this campaign, atomically across campaigns
    and workers: the rows that may be sent, the rows capped, and the ids that took a slot."""
    admitted = await deps.control.caps.take(
        [str(r.device_id) for r in rows], str(campaign.id), cap, time.time()
    )
    sendable = [r for r, ok in zip(rows, admitted, strict=True) if ok]
    capped = [
        Outcome(
            r.delivery_id,
            DeliveryStatus.capped,
            error_code="frequency_cap",
            error_detail=(
                f"the device received {cap.count} live campaign(s) in the last "
                f"{cap.window_seconds} s (WAVECAST_FREQUENCY_CAP)"
            ),
        )
        for r, ok in zip(rows, admitted, strict=True)
        if not ok
    ]
    return sendable, capped, {r.delivery_id for r in sendable}


async def _return_cap_slots(
    deps: SenderDeps,
    campaign: Campaign,
    rows: Sequence[Claimed],
    outcomes: Sequence[Outcome],
    taken: set[int],
) -> None:
    """A row that took a slot and then never left (given back: stopped, throttled, Redis
    gone) frees its slot; one that was tried keeps it."""
    unsent = {o.delivery_id for o in outcomes if o.give_back and o.delivery_id in taken}
    if not unsent:
        return
    devices = [str(r.device_id) for r in rows if r.delivery_id in unsent]
    with contextlib.suppress(RedisError):
        await deps.control.caps.give_back(devices, str(campaign.id))


async def _send(
    deps: SenderDeps,
    campaign: Campaign,
    content: Content,
    timing: SendTiming,
    rows: Sequence[Claimed],
    report: PumpReport,
    pace: _Pace | None = None,
) -> tuple[list[Outcome], str | None]:
    """Admit, check, wait until due, send under a gate permit, map the results.

    The admission (`_admit`) reserves the batch's sends on the campaign's rate and on its
    provider's cap as they are in Redis now (rows claimed at a rate cut since go back
    untouched, not an attempt), and takes the permit when they are due within
    CHECKS_LEAD_SECONDS. A batch due later, or charged to two capped providers, takes its
    permit on its own CHECKS_LEAD_SECONDS before it is due, after the providers' waits.
    Under the permit, the database has the last word (`may_send`): asked beside the
    admission when the loop's batches leave at once (a stop that was answered closed the
    grants first, so the admission refuses; one answered later waits for this permit),
    else after the permit.

    Right before the requests start, rows that must not leave now (a deadline passed, or
    quiet hours began, while they waited: `outcomes.not_now`) are decided instead, and the
    rest carry the time left before their deadline (`timing_rules.with_time_left`).

    Raises `_Stop` (or a Redis error) only before anything was sent; once providers have
    answered, it returns every outcome, with why the loop must stop (a closed fence, a
    provider halt, Redis gone), so no answer is ever given back as unsent."""
    if not rows:
        return [], None
    pace = pace or _Pace()
    routed: list[tuple[Claimed, Message, Provider]] = []
    for row in rows:
        message = Message(
            row.delivery_id,
            row.device_id,
            row.token,
            row.platform,
            row.locale,
            row.apns_environment,
        )
        routed.append((row, message, deps.providers(message)))
    capped = sorted(
        {p.name for _r, _m, p in routed if provider_cap(deps.settings, p.name) is not None}
    )
    # One capped provider (the usual batch) is charged in the admission itself; two would
    # be charged the whole batch each there, so they reserve their own shares afterwards.
    scopes = [throttle_scope(campaign.id)]
    if len(capped) == 1:
        scopes.append(provider_scope(capped[0]))
    lead = CHECKS_LEAD_SECONDS if len(capped) <= 1 else -1.0
    early = _EarlyCheck.start(deps, campaign.id) if pace.immediate else None
    try:
        with report.timing("throttle"):
            admission = await _admit(deps, campaign.id, scopes, len(rows), lead=lead)
    except BaseException:
        if early is not None:
            await early.drop()
        raise
    due = time.monotonic() + admission.grant.wait
    THROTTLE_WAIT.labels("campaign").observe(admission.grant.wait)
    pace.rate, pace.known = admission.rate, True
    pace.caps = _tightest_cap(deps.settings, capped)
    pace.immediate = admission.permit is not None
    permit = None
    if admission.permit is not None:
        # Entered below before anything else awaits: until then nothing renews the permit.
        permit = deps.control.watch.hold(campaign.id, admission.permit, admission.asked)
    elif early is not None:
        # The database is asked after the permit instead.
        await early.drop()
        early = None
    # Claimed at a rate that was cut since: the rest goes back untouched.
    granted = admission.grant.n
    outcomes: list[Outcome] = [give_back(r) for r, _m, _p in routed[granted:]]
    by_provider: dict[str, list[tuple[Claimed, Message]]] = defaultdict(list)
    providers: dict[str, Provider] = {}
    for row, message, provider in routed[:granted]:
        providers[provider.name] = provider
        by_provider[provider.name].append((row, message))
    if permit is None:
        with report.timing("throttle"):
            await _until_due(due - CHECKS_LEAD_SECONDS)
            if len(capped) > 1:
                for name in capped:
                    await _wait_provider(deps, name, len(by_provider[name]))
    checks = waited = started = time.perf_counter()
    elapsed = 0.0
    late: list[Outcome] = []
    try:
        async with permit or deps.control.watch.permit(campaign.id) as fence:
            try:
                if early is not None and admission.asked - early.asked > CHECKS_LEAD_SECONDS:
                    # The admission waited (a Retry-After block, a lost rate): the early
                    # answer is too old to be the last word.
                    await early.drop()
                    early = None
                if early is not None:
                    may_send = await early.task
                else:
                    may_send = await _may_send(deps, campaign.id)
                if not may_send:
                    raise _Stop("stopped in the database")
                waited = time.perf_counter()
                await _until_due(due)
                late = not_now(timing, rows[:granted], utcnow())
                if late:
                    by_provider = _without(by_provider, {o.delivery_id for o in late})
                content = with_time_left(
                    content, timing, [r for g in by_provider.values() for r, _ in g], utcnow()
                )
                started = time.perf_counter()
                report.add("throttle", started - waited)
                results = await asyncio.gather(
                    *(
                        _send_group(
                            providers[name],
                            campaign,
                            content,
                            group,
                            _SharedBlock(deps, name),
                            fence,
                            deps.settings.provider_timeout_seconds,
                        )
                        for name, group in by_provider.items()
                    )
                )
                elapsed = time.perf_counter() - started
            finally:
                report.add("provider", elapsed)
                report.add("checks", time.perf_counter() - checks - elapsed - (started - waited))
    except GateClosed as exc:
        raise _Stop(f"gate closed ({exc.refusal.name})") from exc
    except RedisError as exc:
        # Only taking the permit talks to Redis here: nothing was sent.
        raise _Stop("redis unreachable") from exc
    finally:
        if early is not None:
            await early.drop()
    outcomes += late
    now = utcnow()
    halt: SendResult | None = None
    stop: str | None = None
    for (name, group), group_results in zip(by_provider.items(), results, strict=True):
        by_id = {r.delivery_id: r for r in group_results}
        retry_after = max(
            (r.retry_after or 0.0 for r in group_results if not r.unsent), default=0.0
        )
        if retry_after > 0:
            try:
                await deps.control.throttle.block_until(provider_scope(name), retry_after)
            except RedisError:
                stop = "redis unreachable"
        for row, _message in group:
            result = by_id.get(row.delivery_id) or SendResult(
                row.delivery_id,
                ResultKind.retry,
                error_code="no_result",
                detail="the provider gave no result for this message",
            )
            if result.kind is ResultKind.halt:
                halt = result
            elif result.error_code == STOPPED:
                stop = f"gate closed: {fence.why_closed}"
            outcomes.append(outcome_of(result, row, name, deps.settings, now))
    if halt is not None:
        stop = "provider halt"
        try:
            await commands.auto_pause(
                deps.sessionmaker,
                deps.control,
                campaign.id,
                f"provider refused our credentials or sender ({halt.error_code}): "
                f"{halt.detail}; the deployment's provider configuration needs fixing before "
                "resuming",
            )
        except RedisError:
            # The pause is committed; the tick publishes its grant once Redis is back.
            log.warning("could not publish an automatic pause", exc_info=True)
    return outcomes, stop


async def _may_send(deps: SenderDeps, campaign_id: uuid.UUID) -> bool:
    """The database's last word before a batch's requests start."""
    async with unit_of_work(deps.sessionmaker) as session:
        return await campaigns_repo.may_send(session, campaign_id)


@dataclass
class _EarlyCheck:
    """`may_send` asked beside a batch's admission rather than after its permit."""

    task: asyncio.Future[bool]
    asked: float

    @classmethod
    def start(cls, deps: SenderDeps, campaign_id: uuid.UUID) -> _EarlyCheck:
        return cls(asyncio.ensure_future(_may_send(deps, campaign_id)), time.monotonic())

    async def drop(self) -> None:
        """Cancel and wait it out: it is no longer wanted."""
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def _without(
    groups: dict[str, list[tuple[Claimed, Message]]], ids: set[int]
) -> dict[str, list[tuple[Claimed, Message]]]:
    kept = {name: [(r, m) for r, m in g if r.delivery_id not in ids] for name, g in groups.items()}
    return {name: g for name, g in kept.items() if g}


async def _wait_provider(deps: SenderDeps, name: str, n: int) -> None:
    """Provider-wide caps and Retry-After blocks apply to every campaign and worker."""
    scope = provider_scope(name)
    remaining = n
    started = time.monotonic()
    while remaining > 0:
        try:
            grant = await deps.control.throttle.reserve_batch([scope], remaining)
        except RateUnknown:
            await deps.control.throttle.set_rate(scope, provider_cap(deps.settings, name))
            continue
        if grant.wait > 0:
            await asyncio.sleep(grant.wait)
        remaining -= grant.n
    THROTTLE_WAIT.labels(name).observe(time.monotonic() - started)


@dataclass(frozen=True)
class _SharedBlock:
    """The provider's Retry-After block in Redis, for a provider to read right before a call
    leaves and to write the instant an answer asks everyone to wait (`ProviderBlock`)."""

    deps: SenderDeps
    provider: str

    async def remaining(self) -> float:
        return await self.deps.control.throttle.blocked_for(provider_scope(self.provider))

    async def block(self, seconds: float) -> None:
        await self.deps.control.throttle.block_until(provider_scope(self.provider), seconds)


async def _send_group(
    provider: Provider,
    campaign: Campaign,
    content: Content,
    group: Sequence[tuple[Claimed, Message]],
    block: _SharedBlock,
    fence: StartFence,
    seconds: float,
) -> list[SendResult]:
    batch = Batch(
        campaign_id=str(campaign.id),
        content=content,
        messages=[message for _row, message in group],
        block=block,
        fence=fence,
        deadline=time.monotonic() + seconds,
    )
    started = time.perf_counter()
    try:
        # The provider returns by the deadline with the answers it has; this bound is only a
        # last resort against a provider that does not (its answers would be lost). A deadline
        # on this task rather than a task of its own (wait_for): the requests start in this
        # pass of the event loop, not the next.
        async with asyncio.timeout(seconds + PROVIDER_GRACE_SECONDS):
            return await provider.send(batch)
    except TimeoutError:
        return [timed_out(m.delivery_id, provider.name, seconds) for m in batch.messages]
    finally:
        PROVIDER_LATENCY.labels(provider.name).observe(time.perf_counter() - started)


async def _record(
    deps: SenderDeps, lease: uuid.UUID, outcomes: list[Outcome], report: PumpReport
) -> None:
    with report.timing("record"):
        async with unit_of_work(deps.sessionmaker) as session:
            await ledger.record(session, lease_token=lease, outcomes=outcomes, now=utcnow())
    tally: Counter[tuple[str, str]] = Counter()
    for o in outcomes:
        key = "given_back" if o.give_back else o.status.value
        report.outcomes[key] = report.outcomes.get(key, 0) + 1
        if o.status is DeliveryStatus.sent:
            report.sent += 1
        elif not o.give_back:
            report.other += 1
        tally[o.provider or "none", key] += 1
    count_outcomes(tally)
