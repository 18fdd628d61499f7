"""Ledger retention: a campaign that ended long enough ago gives up its ledger rows and
engagement events, and keeps its per-wave figures.

WAVECAST_LEDGER_RETENTION_DAYS sets how long. A campaign is pruned only when all of these
hold, checked again under the campaign's row lock right before its summary is written:
- its status is terminal (completed, cancelled, killed): nothing can send for it again;
- it ended (`finished_at`) more than the retention period ago;
- no ledger row of it is open (queued, sending, retrying): every row has its outcome.

Pruning a campaign, in order:
1. one transaction: its per-wave figures (rows by status; received, opened, converted and
   the time to open from its engagement events) go to `ledger_wave_summary`, and the audit
   log records `campaign.ledger_pruned` with what goes. From this commit on the campaign's
   view and engagement read the summary (`ledger.summaries`), so they never show a ledger
   half deleted;
2. its engagement events, then its ledger rows, are deleted in batches of `batch` rows, one
   short transaction each (a large campaign never holds a long lock or a long transaction).
   On PostgreSQL, when every campaign created in the campaign's month has been pruned (or
   ended without a row) and the month is over by a month, its rows are not deleted: the
   month's partition is detached CONCURRENTLY and dropped whole (`droppable_months`,
   `app.delivery.partitions.drop`), which frees its space at once and leaves nothing for
   vacuum.
A prune interrupted between batches is finished by the next run: a campaign with a summary
and rows left is a candidate again, and its summary (taken from the whole ledger) is kept.

The audit log is never touched: its events name campaigns by id and stay verifiable.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, delete, exists, func, not_, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.campaigns.models import Campaign
from app.campaigns.state import TERMINAL_STATUSES
from app.db.session import unit_of_work
from app.delivery import ledger, partitions
from app.delivery.models import OPEN_STATUSES, Delivery, LedgerWaveSummary
from app.events import service as events_service
from app.events.models import EngagementEvent

_campaign = Campaign.__table__  # type: ignore[attr-defined]
_delivery = Delivery.__table__  # type: ignore[attr-defined]
_event = EngagementEvent.__table__  # type: ignore[attr-defined]
_summary = LedgerWaveSummary.__table__  # type: ignore[attr-defined]

# Rows deleted per transaction.
BATCH = 10_000
AUDIT_ACTION = "campaign.ledger_pruned"


@dataclass(frozen=True)
class Prunable:
    """A campaign whose ledger rows may go."""

    campaign_id: uuid.UUID
    name: str
    status: str
    finished_at: datetime
    rows: int
    events: int
    # True when an earlier prune wrote its summary and was interrupted.
    resumed: bool
    # The campaign's ledger month (app.delivery.partitions).
    month: int = 0


@dataclass(frozen=True)
class Pruned:
    campaign_id: uuid.UUID
    rows: int
    events: int


def cutoff(now: datetime, retention_days: int) -> datetime:
    """Campaigns that ended before this instant are pruned."""
    if retention_days < 1:
        raise ValueError("the retention is at least one day")
    return now - timedelta(days=retention_days)


def _eligible(before: datetime) -> list[ColumnElement[bool]]:
    open_row = exists().where(
        _delivery.c.campaign_id == _campaign.c.id,
        _delivery.c.status.in_(sorted(s.value for s in OPEN_STATUSES)),
    )
    return [
        _campaign.c.status.in_(sorted(s.value for s in TERMINAL_STATUSES)),
        _campaign.c.finished_at.is_not(None),
        _campaign.c.finished_at < before,
        ~open_row,
    ]


async def prunable(session: AsyncSession, *, before: datetime) -> list[Prunable]:
    """Campaigns to prune (ended before `before`), oldest first, with the rows that go."""
    has_rows = exists().where(_delivery.c.campaign_id == _campaign.c.id)
    has_events = exists().where(_event.c.campaign_id == _campaign.c.id)
    summarised = exists().where(_summary.c.campaign_id == _campaign.c.id)
    rows = (
        select(func.count())
        .select_from(_delivery)
        .where(_delivery.c.campaign_id == _campaign.c.id)
        .scalar_subquery()
    )
    events = (
        select(func.count())
        .select_from(_event)
        .where(_event.c.campaign_id == _campaign.c.id)
        .scalar_subquery()
    )
    query = (
        select(
            _campaign.c.id,
            _campaign.c.name,
            _campaign.c.status,
            _campaign.c.finished_at,
            rows,
            events,
            summarised,
            _campaign.c.ledger_month,
        )
        .where(*_eligible(before), or_(has_rows, has_events))
        .order_by(_campaign.c.finished_at, _campaign.c.id)
    )
    return [
        Prunable(cid, name, status, finished, int(n_rows), int(n_events), bool(resumed), month)
        for cid, name, status, finished, n_rows, n_events, resumed, month in (
            await session.execute(query)
        ).all()
    ]


async def droppable_months(
    session: AsyncSession, *, now: datetime, pruning: Collection[uuid.UUID] = ()
) -> list[int]:
    """The months whose partition may be dropped whole (PostgreSQL; none on SQLite): over
    by a month at least (no campaign can be created in them any more), and every campaign
    created in them ended and was pruned (has its summary), ended without a ledger row, or
    is in `pruning` (about to be)."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    current = partitions.month_of(now)
    candidates = sorted(m for m in await partitions.existing(session) if m < current - 1)
    if not candidates:
        return []
    summarised = exists().where(_summary.c.campaign_id == _campaign.c.id)
    has_rows = exists().where(_delivery.c.campaign_id == _campaign.c.id)
    done = and_(
        _campaign.c.status.in_(sorted(s.value for s in TERMINAL_STATUSES)),
        or_(summarised, ~has_rows, _campaign.c.id.in_(list(pruning))),
    )
    blocked = await session.execute(
        select(_campaign.c.ledger_month)
        .where(_campaign.c.ledger_month.in_(candidates), not_(done))
        .distinct()
    )
    held = {month for (month,) in blocked}
    return [m for m in candidates if m not in held]


async def _summarise(
    session: AsyncSession,
    principal: Principal,
    campaign_id: uuid.UUID,
    *,
    before: datetime,
    retention_days: int,
    now: datetime,
) -> bool:
    """Step 1 for one campaign, in the caller's transaction: False when it is no longer
    eligible (it changed since it was listed)."""
    locked = await session.execute(
        select(_campaign.c.id)
        .where(_campaign.c.id == campaign_id, *_eligible(before))
        .with_for_update(of=_campaign)
    )
    if locked.first() is None:
        return False
    if await ledger.summaries(session, campaign_id):
        return True  # an interrupted prune: its summary was taken from the whole ledger
    counts = await ledger.counts_by_wave(session, campaign_id)
    figures = await events_service.by_wave(session, campaign_id)
    waves = sorted(counts.keys() | figures.keys())
    for wave in waves:
        f = figures.get(wave, events_service.WaveFigures())
        await session.execute(
            _summary.insert().values(
                campaign_id=campaign_id,
                wave=wave,
                counts=counts.get(wave, {}),
                received=f.received,
                opened=f.opened,
                converted=f.converted,
                time_to_open_p50=f.time_to_open[0] if f.time_to_open else None,
                time_to_open_p90=f.time_to_open[1] if f.time_to_open else None,
                pruned_at=now,
            )
        )
    audit.record(
        session,
        principal,
        AUDIT_ACTION,
        subject_type="campaign",
        subject_id=campaign_id,
        reason=f"ended more than {retention_days} days ago (WAVECAST_LEDGER_RETENTION_DAYS)",
        after={
            "rows": sum(sum(c.values()) for c in counts.values()),
            "events": sum(f.received + f.opened + f.converted for f in figures.values()),
            "waves": {
                str(wave): {
                    "counts": counts.get(wave, {}),
                    "received": figures.get(wave, events_service.WaveFigures()).received,
                    "opened": figures.get(wave, events_service.WaveFigures()).opened,
                    "converted": figures.get(wave, events_service.WaveFigures()).converted,
                }
                for wave in waves
            },
        },
    )
    return True


async def _delete_batch(session: AsyncSession, table: Table, campaign_id: uuid.UUID, n: int) -> int:
    # The ledger's rows with their campaign's month: one partition read, not each one's.
    mine = (
        ledger.in_campaign(campaign_id)
        if table is _delivery
        else table.c.campaign_id == campaign_id
    )
    ids = select(table.c.id).where(mine).limit(n).scalar_subquery()
    result = await session.execute(delete(table).where(mine, table.c.id.in_(ids)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def prune(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    *,
    retention_days: int,
    now: datetime,
    batch: int = BATCH,
    on_pruned: Callable[[Pruned], None] | None = None,
    on_dropped: Callable[[int], None] | None = None,
) -> list[Pruned]:
    """Prune every eligible campaign (see the module's docstring); returns what went.
    `on_dropped` hears of each month whose partition was dropped."""
    before = cutoff(now, retention_days)
    async with sessionmaker() as session:
        listed = await prunable(session, before=before)
    summarised: list[Prunable] = []
    for campaign in listed:
        async with unit_of_work(sessionmaker) as session:
            eligible = await _summarise(
                session,
                principal,
                campaign.campaign_id,
                before=before,
                retention_days=retention_days,
                now=now,
            )
        if eligible:
            summarised.append(campaign)
    async with sessionmaker() as session:
        dropping = set(await droppable_months(session, now=now))
    done: list[Pruned] = []
    with_partition: dict[int, list[Pruned]] = {}

    def report(pruned: Pruned) -> None:
        done.append(pruned)
        if on_pruned is not None:
            on_pruned(pruned)

    for campaign in summarised:
        tables = [_event] if campaign.month in dropping else [_event, _delivery]
        deleted = {_event.name: 0, _delivery.name: 0}
        for table in tables:
            while True:
                async with unit_of_work(sessionmaker) as session:
                    n = await _delete_batch(session, table, campaign.campaign_id, batch)
                deleted[table.name] += n
                if n < batch:
                    break
        if campaign.month in dropping:
            # Its rows go with the month's partition, below.
            pruned = Pruned(campaign.campaign_id, campaign.rows, deleted[_event.name])
            with_partition.setdefault(campaign.month, []).append(pruned)
            continue
        report(Pruned(campaign.campaign_id, deleted[_delivery.name], deleted[_event.name]))
    engine = sessionmaker.kw["bind"]
    for month in sorted(dropping):
        await partitions.drop(engine, month)
        if on_dropped is not None:
            on_dropped(month)
        for pruned in with_partition.get(month, []):
            report(pruned)
    return done
