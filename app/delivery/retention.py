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
A prune interrupted between batches is finished by the next run: a campaign with a summary
and rows left is a candidate again, and its summary (taken from the whole ledger) is kept.

The audit log is never touched: its events name campaigns by id and stay verifiable.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audit import service as audit
from app.auth.principal import Principal
from app.campaigns.models import Campaign
from app.campaigns.state import TERMINAL_STATUSES
from app.db.session import unit_of_work
from app.delivery import ledger
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
        )
        .where(*_eligible(before), or_(has_rows, has_events))
        .order_by(_campaign.c.finished_at, _campaign.c.id)
    )
    return [
        Prunable(cid, name, status, finished, int(n_rows), int(n_events), bool(resumed))
        for cid, name, status, finished, n_rows, n_events, resumed in (
            await session.execute(query)
        ).all()
    ]


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
    ids = select(table.c.id).where(table.c.campaign_id == campaign_id).limit(n).scalar_subquery()
    result = await session.execute(delete(table).where(table.c.id.in_(ids)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def prune(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    *,
    retention_days: int,
    now: datetime,
    batch: int = BATCH,
    on_pruned: Callable[[Pruned], None] | None = None,
) -> list[Pruned]:
    """Prune every eligible campaign (see the module's docstring); returns what went."""
    before = cutoff(now, retention_days)
    async with sessionmaker() as session:
        listed = await prunable(session, before=before)
    done: list[Pruned] = []
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
        if not eligible:
            continue
        deleted = {"events": 0, "rows": 0}
        for kind, table in (("events", _event), ("rows", _delivery)):
            while True:
                async with unit_of_work(sessionmaker) as session:
                    n = await _delete_batch(session, table, campaign.campaign_id, batch)
                deleted[kind] += n
                if n < batch:
                    break
        pruned = Pruned(campaign.campaign_id, rows=deleted["rows"], events=deleted["events"])
        done.append(pruned)
        if on_pruned is not None:
            on_pruned(pruned)
    return done
