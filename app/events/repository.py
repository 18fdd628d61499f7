"""The statements over `engagement_event`."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    Float,
    Integer,
    Interval,
    String,
    bindparam,
    extract,
    func,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel.ext.asyncio.session import AsyncSession

from app.campaigns.models import Campaign
from app.campaigns.repository import possible_event
from app.delivery import ledger
from app.delivery.models import Delivery
from app.events import parse
from app.events.models import EngagementEvent, EventType

_event = EngagementEvent.__table__  # type: ignore[attr-defined]
_delivery = Delivery.__table__  # type: ignore[attr-defined]
_campaign = Campaign.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Stored:
    accepted: int
    duplicates: int
    # Indexes (as given) of the events whose ref is no delivery.
    unknown: list[int]
    # Indexes (as given) of the events whose time is before their delivery was made
    # (app.events.parse.MAX_BEHIND): none of them is stored.
    early: list[int]


# One statement per batch: the events travel as arrays, are matched to their deliveries (which
# give their campaign and wave, and when they were made), and are inserted in (delivery, type)
# order, so two batches that overlap take their rows' locks in the same order and never
# deadlock; within a batch the first report of a (delivery, type) is the one stored. A report
# from before its delivery was made is not stored (`early`, by the rule of
# app.events.parse.too_early): -infinity, what the driver makes of datetime.min, is early.
_STORE = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:idx AS integer[]),
            CAST(:refs AS bigint[]),
            CAST(:types AS varchar[]),
            CAST(:ats AS timestamptz[])
        ) AS v(idx, ref, type, at)
    ), known AS MATERIALIZED (
        SELECT v.idx, v.ref, v.type, v.at, d.campaign_id, d.wave,
            v.at < d.created_at - :behind AS early
        -- A ref names its ledger partition (app.delivery.partitions.months_of_refs): one
        -- partition read per ref (and month 0's while it is there), however many months
        -- the ledger holds.
        FROM v JOIN delivery d ON d.id = v.ref AND d.ledger_month IN (0, v.ref >> 40)
    ), stored AS (
        INSERT INTO engagement_event
            (delivery_id, campaign_id, wave, type, occurred_at, received_at)
        SELECT ref, campaign_id, wave, type, at, :now FROM known WHERE NOT early
        ORDER BY ref, type, idx
        ON CONFLICT (delivery_id, type) DO NOTHING
        RETURNING 1
    )
    SELECT
        (SELECT count(*) FROM stored) AS stored,
        (SELECT count(*) FROM known WHERE NOT early) AS known,
        ARRAY(SELECT idx FROM known WHERE early ORDER BY idx) AS early,
        ARRAY(
            SELECT v.idx FROM v WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.idx = v.idx)
            ORDER BY v.idx
        ) AS unknown
    """
).bindparams(
    bindparam("idx", type_=ARRAY(Integer)),
    bindparam("refs", type_=ARRAY(BigInteger)),
    bindparam("types", type_=ARRAY(String)),
    bindparam("ats", type_=ARRAY(DateTime(timezone=True))),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("behind", parse.MAX_BEHIND, type_=Interval),
)


async def store(
    session: AsyncSession,
    *,
    indexes: Sequence[int],
    refs: Sequence[int],
    types: Sequence[str],
    ats: Sequence[datetime],
    now: datetime,
) -> Stored:
    """Store a batch of events; a (delivery, type) already stored, in the database or earlier
    in the batch, is a duplicate and changes nothing."""
    if not refs:
        return Stored(0, 0, [], [])
    if session.get_bind().dialect.name == "postgresql":
        row = (
            await session.execute(
                _STORE,
                {
                    "idx": list(indexes),
                    "refs": list(refs),
                    "types": list(types),
                    "ats": list(ats),
                    "now": now,
                },
            )
        ).one()
        return Stored(
            int(row.stored), int(row.known) - int(row.stored), list(row.unknown), list(row.early)
        )
    return await _store_sqlite(session, indexes, refs, types, ats, now)


# SQLite's parameter limit, with room for the other parameters of a statement.
_CHUNK = 500


async def _store_sqlite(
    session: AsyncSession,
    indexes: Sequence[int],
    refs: Sequence[int],
    types: Sequence[str],
    ats: Sequence[datetime],
    now: datetime,
) -> Stored:
    """The embedded default's road: one writer at a time, so the checks before the insert
    hold; the insert still ignores a conflict."""
    wanted = sorted(set(refs))
    # Each delivery's campaign, wave, and when it was made.
    deliveries: dict[int, tuple[uuid.UUID, int, datetime]] = {}
    seen: set[tuple[int, str]] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        for ident, campaign_id, wave, created_at in await session.execute(
            select(
                _delivery.c.id, _delivery.c.campaign_id, _delivery.c.wave, _delivery.c.created_at
            ).where(_delivery.c.id.in_(chunk))
        ):
            deliveries[ident] = (campaign_id, wave, created_at)
        for ident, kind in await session.execute(
            select(_event.c.delivery_id, _event.c.type).where(_event.c.delivery_id.in_(chunk))
        ):
            seen.add((ident, kind))
    rows = []
    unknown = []
    early = []
    duplicates = 0
    for index, ref, kind, at in zip(indexes, refs, types, ats, strict=True):
        found = deliveries.get(ref)
        if found is None:
            unknown.append(index)
        elif parse.too_early(at, found[2]):
            early.append(index)
        elif (ref, kind) in seen:
            duplicates += 1
        else:
            seen.add((ref, kind))
            rows.append(
                {
                    "delivery_id": ref,
                    "campaign_id": found[0],
                    "wave": found[1],
                    "type": kind,
                    "occurred_at": at,
                    "received_at": now,
                }
            )
    if rows:
        await session.execute(
            sqlite.insert(_event).on_conflict_do_nothing(index_elements=["delivery_id", "type"]),
            rows,
        )
    return Stored(len(rows), duplicates, unknown, early)


async def counts_by_wave(
    session: AsyncSession, campaign_id: uuid.UUID
) -> dict[int, dict[str, int]]:
    rows = await session.execute(
        select(_event.c.wave, _event.c.type, func.count())
        .where(
            _event.c.campaign_id == campaign_id,
            possible_event(session.get_bind().dialect.name, campaign_id),
        )
        .group_by(_event.c.wave, _event.c.type)
    )
    counts: dict[int, dict[str, int]] = {}
    for wave, kind, n in rows:
        counts.setdefault(wave, {})[kind] = int(n)
    return counts


def _seconds_to_open(dialect: str) -> object:
    """Seconds from a delivery's send to its open, never below 0: `sent_at` is written when
    the provider's answer is recorded, and a quick thumb can open the push before that."""
    if dialect == "postgresql":
        return func.greatest(0.0, extract("epoch", _event.c.occurred_at - _delivery.c.sent_at))
    # julianday is a double of days: about 10 µs of noise in seconds, rounded off to the ms.
    return func.max(
        0.0,
        func.round(
            (func.julianday(_event.c.occurred_at) - func.julianday(_delivery.c.sent_at)) * 86400.0,
            3,
        ),
    )


_OPENED_SENT = (
    (_event.c.type == EventType.opened.value)
    & (_delivery.c.id == _event.c.delivery_id)
    & _delivery.c.sent_at.is_not(None)
)


async def time_to_open(
    session: AsyncSession, campaign_id: uuid.UUID, quantiles: Sequence[float]
) -> dict[int, list[float]]:
    """Per wave, the seconds from send to open at each quantile (nearest rank: the smallest
    value with at least that share of the opens at or below it). Opens from before their
    campaign existed (`possible_event`) are left out."""
    dialect = session.get_bind().dialect.name
    seconds = _seconds_to_open(dialect)
    where = (
        (_event.c.campaign_id == campaign_id)
        & _OPENED_SENT
        & possible_event(dialect, campaign_id)
        & ledger.in_campaign(campaign_id)
    )
    if dialect == "postgresql":
        rows = await session.execute(
            select(
                _event.c.wave,
                func.percentile_disc(
                    bindparam("q", list(quantiles), type_=ARRAY(Float)), type_=ARRAY(Float)
                )
                .within_group(seconds)  # type: ignore[arg-type]
                .label("values"),
            )
            .select_from(_event.join(_delivery, _delivery.c.id == _event.c.delivery_id))
            .where(where)
            .group_by(_event.c.wave)
        )
        return {wave: [float(v) for v in values] for wave, values in rows}
    found: dict[int, list[float]] = {}
    for wave, value in await session.execute(
        select(_event.c.wave, seconds.label("s"))  # type: ignore[attr-defined]
        .select_from(_event.join(_delivery, _delivery.c.id == _event.c.delivery_id))
        .where(where)
    ):
        found.setdefault(wave, []).append(float(value))
    return {wave: [nearest_rank(sorted(v), q) for q in quantiles] for wave, v in found.items()}


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """PostgreSQL's percentile_disc over a sorted, non-empty sample."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def per_second(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    kind: EventType,
    since: datetime,
    until: datetime,
) -> list[tuple[int, int]]:
    """(Unix second, count) of a campaign's events of one type in [since, until), in order,
    seconds without events left out."""
    second: ColumnElement[Any]
    if session.get_bind().dialect.name == "postgresql":
        second = func.floor(extract("epoch", _event.c.occurred_at))
    else:
        second = func.cast(func.strftime("%s", _event.c.occurred_at), Integer)
    rows = await session.execute(
        select(second.label("second"), func.count())
        .where(
            _event.c.campaign_id == campaign_id,
            _event.c.type == kind.value,
            _event.c.occurred_at >= since,
            _event.c.occurred_at < until,
        )
        .group_by(second)
        .order_by(second)
    )
    return [(int(s), int(n)) for s, n in rows]


async def latest(
    session: AsyncSession, campaign_id: uuid.UUID, kind: EventType, *, since: datetime
) -> datetime | None:
    """The time of a campaign's last event of one type at or after `since`."""
    # max() keeps its argument's type: the value comes back aware UTC on both databases.
    value: datetime | None = (
        await session.execute(
            select(func.max(_event.c.occurred_at)).where(
                _event.c.campaign_id == campaign_id,
                _event.c.type == kind.value,
                _event.c.occurred_at >= since,
            )
        )
    ).scalar_one()
    return value


async def campaign_created(session: AsyncSession, campaign_id: uuid.UUID) -> datetime | None:
    """When the campaign was created (no push of it is older); None for no campaign."""
    value: datetime | None = (
        await session.execute(select(_campaign.c.created_at).where(_campaign.c.id == campaign_id))
    ).scalar_one_or_none()
    return value
