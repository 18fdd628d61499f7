"""Campaign queries: the only place that builds statements over campaigns and their waves.

`may_send` is the database's last word before a send, written once: the send loop asks it
right before a batch's requests start, and the ledger's claim carries the same condition
(`may_send_clause`), so no row of a stopped campaign is even leased.

`read_view` reads everything the campaign's view shows (`GET /v1/campaigns/{id}`, polled by
the form and by marketing tools) in one statement on PostgreSQL, without the ORM.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Interval, and_, bindparam, exists, func, or_
from sqlalchemy import select as core_select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.campaigns.models import Campaign, CampaignKind, CampaignWave
from app.campaigns.state import SENDING_STATUSES, CampaignStatus
from app.checks.models import WaveCheckResult
from app.delivery.models import Delivery, LedgerWaveSummary
from app.events.models import EngagementEvent
from app.events.parse import MAX_BEHIND
from app.killswitch.models import KillSwitch

# A campaign that can start sending without a person: the global switch pauses these.
LIVE_STATUSES = (CampaignStatus.running, CampaignStatus.scheduled)


async def get(
    session: AsyncSession, campaign_id: uuid.UUID, *, lock: bool = False
) -> Campaign | None:
    query = select(Campaign).where(col(Campaign.id) == campaign_id)
    if lock:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def waves(session: AsyncSession, campaign_id: uuid.UUID) -> list[CampaignWave]:
    rows = await session.exec(
        select(CampaignWave)
        .where(col(CampaignWave.campaign_id) == campaign_id)
        .order_by(col(CampaignWave.index))
    )
    return list(rows.all())


async def live(session: AsyncSession, *, lock: bool = False) -> list[Campaign]:
    """Running and scheduled campaigns."""
    query = select(Campaign).where(col(Campaign.status).in_([s.value for s in LIVE_STATUSES]))
    if lock:
        query = query.with_for_update()
    return list((await session.exec(query)).all())


async def newest(
    session: AsyncSession,
    *,
    limit: int,
    before: datetime | None,
    before_id: uuid.UUID | None,
    status: CampaignStatus | None,
    kind: CampaignKind | None,
) -> Sequence[Campaign]:
    """Newest first. The id breaks ties, so equal `created_at`s never repeat or skip one."""
    query = (
        select(Campaign)
        .order_by(col(Campaign.created_at).desc(), col(Campaign.id).desc())
        .limit(limit)
    )
    if before is not None and before_id is not None:
        created_at, ident = col(Campaign.created_at), col(Campaign.id)
        query = query.where(or_(created_at < before, and_(created_at == before, ident < before_id)))
    elif before is not None:
        query = query.where(col(Campaign.created_at) < before)
    if status is not None:
        query = query.where(col(Campaign.status) == status.value)
    if kind is not None:
        query = query.where(col(Campaign.kind) == kind.value)
    return (await session.exec(query)).all()


async def wave_counts(
    session: AsyncSession, campaign_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if not campaign_ids:
        return {}
    rows = await session.exec(
        select(col(CampaignWave.campaign_id), func.count())
        .where(col(CampaignWave.campaign_id).in_(list(campaign_ids)))
        .group_by(col(CampaignWave.campaign_id))
    )
    return {campaign_id: int(n) for campaign_id, n in rows.all()}


def stopped_for_good_clause(campaign_id: ColumnElement[uuid.UUID]) -> ColumnElement[bool]:
    """True when the campaign was killed or cancelled: for a statement over delivery rows,
    whose rows coming back from a worker or an expired lease must not become sendable."""
    return exists().where(
        and_(
            col(Campaign.id) == campaign_id,
            col(Campaign.status).in_([CampaignStatus.killed.value, CampaignStatus.cancelled.value]),
        )
    )


def may_send_clause(campaign_id: uuid.UUID | ColumnElement[uuid.UUID]) -> ColumnElement[bool]:
    """True while the campaign may start provider requests: it is sending and the global
    kill switch is released. For a statement's WHERE (the ledger's claim)."""
    sending = exists().where(
        and_(
            col(Campaign.id) == campaign_id,
            col(Campaign.status).in_([s.value for s in SENDING_STATUSES]),
        )
    )
    engaged = exists().where(col(KillSwitch.engaged).is_(True))
    return and_(sending, ~engaged)


async def may_send(session: AsyncSession, campaign_id: uuid.UUID) -> bool:
    """The database's last word before a batch's requests start."""
    return bool((await session.execute(select(may_send_clause(campaign_id)))).scalar_one())


async def ids_with_status(session: AsyncSession, status: CampaignStatus) -> list[uuid.UUID]:
    rows = await session.exec(select(Campaign.id).where(col(Campaign.status) == status.value))
    return list(rows.all())


async def due_scheduled(session: AsyncSession, now: datetime) -> list[uuid.UUID]:
    """Scheduled campaigns whose start time has come."""
    rows = await session.exec(
        select(Campaign.id).where(
            col(Campaign.status) == CampaignStatus.scheduled.value,
            col(Campaign.start_at) <= now,
        )
    )
    return list(rows.all())


async def changed(session: AsyncSession, wanted: ColumnElement[bool]) -> Sequence[Campaign]:
    """The campaigns the grant sync re-publishes (`engine.sync_grants` says which)."""
    return (await session.exec(select(Campaign).where(wanted))).all()


# ---------------------------------------------------------------- the view's one read
_campaign = Campaign.__table__  # type: ignore[attr-defined]
_wave = CampaignWave.__table__  # type: ignore[attr-defined]
_delivery = Delivery.__table__  # type: ignore[attr-defined]
_event = EngagementEvent.__table__  # type: ignore[attr-defined]
_summary = LedgerWaveSummary.__table__  # type: ignore[attr-defined]
_check = WaveCheckResult.__table__  # type: ignore[attr-defined]

# The campaign's columns the view shows, by name in `CampaignRead.campaign`.
VIEW_COLUMNS = (
    "id",
    "name",
    "kind",
    "status",
    "status_reason",
    "content",
    "segment_id",
    "audience_rules",
    "start_at",
    "throttle_per_second",
    "max_opens_per_second",
    "effective_per_second",
    "effective_reason",
    "failure_threshold_percent",
    "current_wave",
    "guard_override_reason",
    "local_time",
    "checks",
    "quiet_hours",
    "expires_at",
    "priority",
    "created_by",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
)
# A wave: (index, percent, hold_seconds, status, audience_size, target_count, released_at,
# finished_at).
_WAVE_COLUMNS = (
    '"index"',
    "percent",
    "hold_seconds",
    "status",
    "audience_size",
    "target_count",
    "released_at",
    "finished_at",
)
# A check's newest result: (check_name, wave, result, value, detail, observed_at).
_CHECK_COLUMNS = ("check_name", "wave", "result", "value", "detail", "observed_at")


@dataclass(frozen=True, slots=True)
class CampaignRead:
    """What the campaign's view is made of, as stored.

    `counts` and `engagement` are per wave: rows per delivery status, and (received, opened,
    converted). For a pruned campaign both are its kept summary (`ledger_wave_summary`), as
    `app.delivery.ledger.counts_by_wave` and `app.events.service.by_wave` give them.
    `check_results` are the current wave's newest result of each check, by check name (none
    before the first wave is out), as `app.checks.repository.latest`."""

    campaign: Mapping[str, Any]
    waves: Sequence[Sequence[Any]]
    counts: dict[int, dict[str, int]]
    engagement: dict[int, tuple[int, int, int]]
    check_results: Sequence[Sequence[Any]]


def _rows(columns: Sequence[str], source: str, where: str) -> str:
    return f"ARRAY(SELECT ROW({', '.join(columns)}) FROM {source} WHERE {where})"


_PRUNED = "EXISTS (SELECT FROM ledger_wave_summary s WHERE s.campaign_id = c.id)"
# Reports from before their campaign existed cannot be true (stored before the ingest refused
# them): left out of the counts, as `possible_event` leaves them out.
_POSSIBLE_EVENT = (
    f"e.occurred_at >= c.created_at - interval '{int(MAX_BEHIND.total_seconds())} seconds'"
)
# One statement, so one snapshot: the counts always belong to the waves beside them (the API
# benchmark's ceiling, wavecast_tools.bench.api_ceiling, sends the same statement). Each
# ARRAY(...) is a list of anonymous records, which asyncpg reads as tuples with the columns'
# own types (timestamptz, numeric, jsonb through the connection's codecs). A branch of a CASE
# is only run when taken: a pruned campaign never counts its (deleted) ledger. The counts name
# the campaign's ledger month, so they read its partition only (app.delivery.partitions).
VIEW_SQL = f"""
SELECT {", ".join(f"c.{name}" for name in VIEW_COLUMNS)},
    {_rows(_WAVE_COLUMNS, "campaign_wave w", 'w.campaign_id = c.id ORDER BY w."index"')},
    {
    _rows(
        ("wave", "counts", "received", "opened", "converted"),
        "ledger_wave_summary s",
        "s.campaign_id = c.id",
    )
},
    CASE WHEN NOT {_PRUNED} THEN {
    _rows(
        ("wave", "status", "count(*)"),
        "delivery d",
        "d.campaign_id = c.id AND d.ledger_month = c.ledger_month GROUP BY wave, status",
    )
} END,
    CASE WHEN NOT {_PRUNED} THEN {
    _rows(
        ("wave", "type", "count(*)"),
        "engagement_event e",
        f"e.campaign_id = c.id AND {_POSSIBLE_EVENT} GROUP BY wave, type",
    )
} END,
    CASE WHEN c.current_wave >= 0 THEN {
    _rows(
        _CHECK_COLUMNS,
        "wave_check_result r",
        '''r.id IN (
            SELECT max(n.id) FROM wave_check_result n
            WHERE n.campaign_id = c.id AND n.wave = c.current_wave GROUP BY n.check_name
        ) ORDER BY r.check_name''',
    )
} END
FROM campaign c WHERE c.id = $1
"""


def _by_wave(rows: Sequence[Sequence[Any]]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    for wave, key, n in rows:
        counts.setdefault(wave, {})[key] = int(n)
    return counts


def _read(
    campaign: Mapping[str, Any],
    waves: Sequence[Sequence[Any]],
    pruned: Sequence[Sequence[Any]],
    ledger: Sequence[Sequence[Any]],
    events: Sequence[Sequence[Any]],
    check_results: Sequence[Sequence[Any]],
) -> CampaignRead:
    if pruned:
        counts = {w: {str(k): int(v) for k, v in c.items()} for w, c, *_ in pruned}
        engagement = {w: (int(r), int(o), int(v)) for w, _, r, o, v in pruned}
    else:
        counts = _by_wave(ledger)
        engagement = {
            wave: (n.get("received", 0), n.get("opened", 0), n.get("converted", 0))
            for wave, n in _by_wave(events).items()
        }
    return CampaignRead(campaign, waves, counts, engagement, check_results)


def possible_event(dialect: str, campaign_id: uuid.UUID) -> ColumnElement[bool]:
    """An event's time is no earlier than its campaign's creation, within a phone's clock
    skew (`MAX_BEHIND`). The ingest refuses times before the delivery was made, a bound at
    least as late; rows stored before it did may hold year 1 or -infinity, which the reads
    leave out (an -infinity cannot even be subtracted)."""
    created = (
        core_select(_campaign.c.created_at).where(_campaign.c.id == campaign_id).scalar_subquery()
    )
    if dialect == "postgresql":
        # A comparison, not a difference: -infinity compares.
        after: ColumnElement[bool] = _event.c.occurred_at >= created - bindparam(
            "behind", MAX_BEHIND, type_=Interval
        )
        return after
    skew_days = MAX_BEHIND.total_seconds() / 86400.0
    return func.julianday(_event.c.occurred_at) >= func.julianday(created) - skew_days


async def read_view(connection: AsyncConnection, campaign_id: uuid.UUID) -> CampaignRead | None:
    """Everything `GET /v1/campaigns/{id}` shows, or None when there is no such campaign.

    PostgreSQL: one statement, sent by the driver itself outside any transaction (a single
    statement sees one snapshot), so the read costs one round trip and no ORM work.
    SQLite: one statement per part, inside the connection's one deferred transaction."""
    if connection.dialect.name == "postgresql":
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        row = await driver.fetchrow(VIEW_SQL, campaign_id)
        if row is None:
            return None
        n = len(VIEW_COLUMNS)
        waves, pruned, ledger, events, checks = row[n:]
        return _read(
            dict(zip(VIEW_COLUMNS, row[:n], strict=True)),
            waves,
            pruned,
            ledger or (),
            events or (),
            checks or (),
        )
    return await _read_portably(connection, campaign_id)


async def _read_portably(
    connection: AsyncConnection, campaign_id: uuid.UUID
) -> CampaignRead | None:
    """`read_view` statement by statement, through the tables' own column types."""

    async def rows(query: Any) -> list[Any]:
        return list((await connection.execute(query)).all())

    found = (
        (
            await connection.execute(
                core_select(*(_campaign.c[name] for name in VIEW_COLUMNS)).where(
                    _campaign.c.id == campaign_id
                )
            )
        )
        .mappings()
        .first()
    )
    if found is None:
        return None
    waves = await rows(
        core_select(*(_wave.c[name.strip('"')] for name in _WAVE_COLUMNS))
        .where(_wave.c.campaign_id == campaign_id)
        .order_by(_wave.c["index"])
    )
    summary = _summary.c
    pruned = await rows(
        core_select(
            summary.wave, summary.counts, summary.received, summary.opened, summary.converted
        ).where(summary.campaign_id == campaign_id)
    )
    ledger: list[Any] = []
    events: list[Any] = []
    if not pruned:
        ledger = await rows(
            core_select(_delivery.c.wave, _delivery.c.status, func.count())
            .where(_delivery.c.campaign_id == campaign_id)
            .group_by(_delivery.c.wave, _delivery.c.status)
        )
        events = await rows(
            core_select(_event.c.wave, _event.c.type, func.count())
            .where(
                _event.c.campaign_id == campaign_id,
                possible_event(connection.dialect.name, campaign_id),
            )
            .group_by(_event.c.wave, _event.c.type)
        )
    current = found["current_wave"]
    checks: list[Any] = []
    if current >= 0:
        newest = (
            core_select(func.max(_check.c.id))
            .where(_check.c.campaign_id == campaign_id, _check.c.wave == current)
            .group_by(_check.c.check_name)
        )
        checks = await rows(
            core_select(*(_check.c[name] for name in _CHECK_COLUMNS))
            .where(_check.c.id.in_(newest))
            .order_by(_check.c.check_name)
        )
    return _read(dict(found), waves, pruned, ledger, events, checks)
