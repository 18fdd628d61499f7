"""Engagement events: storing reports, and the per-wave figures the campaign views show."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from app.delivery import ledger
from app.delivery.models import DeliveryStatus
from app.events import parse
from app.events import repository as repo
from app.events.models import EventType
from app.events.schemas import (
    EngagementOut,
    EventsResult,
    OpensPoint,
    Rejection,
    WaveEngagement,
)
from app.instants import earlier_by

QUANTILES = (0.5, 0.9)
# The opens series covers at most this much time per answer (3,600 points at most).
MAX_SERIES = timedelta(hours=1)


async def record(
    session: AsyncSession, body: bytes, *, ndjson: bool, now: datetime
) -> EventsResult:
    """Store a batch of reports. Raises `parse.BodyError` for a body that is not a batch;
    every entry of a batch is accepted, a duplicate, or rejected with its index."""
    parsed = parse.check(body, ndjson=ndjson, now=now)
    stored = await repo.store(
        session,
        indexes=parsed.indexes,
        refs=parsed.refs,
        types=parsed.types,
        ats=parsed.ats,
        now=now,
    )
    rejected = [(i, error) for i, error in parsed.rejected]
    rejected += [(i, "unknown ref: no push was sent with it") for i in stored.unknown]
    rejected += [(i, parse.TOO_EARLY) for i in stored.early]
    rejected.sort()
    return EventsResult(
        accepted=stored.accepted,
        duplicates=stored.duplicates,
        rejected=[Rejection(index=i, error=error) for i, error in rejected],
    )


@dataclass(frozen=True)
class WaveFigures:
    received: int = 0
    opened: int = 0
    converted: int = 0
    time_to_open: tuple[float, float] | None = None


def open_rate(opened: int, sent: int) -> float | None:
    return opened / sent if sent else None


async def by_wave(
    session: AsyncSession, campaign_id: uuid.UUID, *, timings: bool = True
) -> dict[int, WaveFigures]:
    """Each wave's counts of reports by type, with time-to-open p50 and p90 unless
    `timings` is false (they join the ledger: the campaign view, refreshed every few
    seconds, shows the counts only). A pruned campaign's come from its kept summary."""
    pruned = await ledger.summaries(session, campaign_id)
    if pruned:
        return {
            wave: WaveFigures(
                received=s.received,
                opened=s.opened,
                converted=s.converted,
                time_to_open=s.time_to_open if timings else None,
            )
            for wave, s in pruned.items()
        }
    counts = await repo.counts_by_wave(session, campaign_id)
    timed = await repo.time_to_open(session, campaign_id, QUANTILES) if timings else {}
    figures = {}
    for wave in counts.keys() | timed.keys():
        c = counts.get(wave, {})
        t = timed.get(wave)
        figures[wave] = WaveFigures(
            received=c.get(EventType.received, 0),
            opened=c.get(EventType.opened, 0),
            converted=c.get(EventType.converted, 0),
            time_to_open=(t[0], t[1]) if t else None,
        )
    return figures


def wave_engagement(
    waves: Mapping[int, int], figures: Mapping[int, WaveFigures]
) -> list[WaveEngagement]:
    """`waves`: each wave's index and how many of its pushes were sent."""
    out = []
    for index, sent in sorted(waves.items()):
        f = figures.get(index, WaveFigures())
        out.append(
            WaveEngagement(
                index=index,
                sent=sent,
                received=f.received,
                opened=f.opened,
                converted=f.converted,
                open_rate=open_rate(f.opened, sent),
                time_to_open_p50=f.time_to_open[0] if f.time_to_open else None,
                time_to_open_p90=f.time_to_open[1] if f.time_to_open else None,
            )
        )
    return out


def series_window(
    now: datetime, since: datetime | None, latest: datetime | None, span: timedelta
) -> tuple[datetime, datetime]:
    """[since, until) of an opens series: from `since` when given (for at most MAX_SERIES),
    otherwise the `span` up to now, or up to the last open when that was longer ago (never
    before the earliest datetime)."""
    span = min(span, MAX_SERIES)
    if since is not None:
        start = since.astimezone(UTC).replace(microsecond=0)
        end = _next_second(now)
        # Compared as a difference: `start + MAX_SERIES` overflows for a start in year 9999.
        return start, end if end - start <= MAX_SERIES else start + MAX_SERIES
    end = _next_second(latest if latest is not None and latest < now - span else now)
    return earlier_by(end, span), end


def _next_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0) + timedelta(seconds=1)


async def opens_series(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    *,
    now: datetime,
    since: datetime | None = None,
    span: timedelta = MAX_SERIES,
) -> tuple[datetime, datetime, list[OpensPoint]]:
    """The series of `series_window`. Opens from before the campaign was created (beyond a
    phone's clock skew) cannot be true: rows stored before the ingest refused them are left
    out, and neither place the default window nor appear in it."""
    created = await repo.campaign_created(session, campaign_id)
    if created is None:
        return (*series_window(now, since, None, span), [])
    earliest = parse.earliest_report(created)
    latest = (
        None
        if since is not None
        else await repo.latest(session, campaign_id, EventType.opened, since=earliest)
    )
    start, end = series_window(now, since, latest, span)
    points = await repo.per_second(
        session, campaign_id, EventType.opened, max(start, earliest), end
    )
    return (
        start,
        end,
        [OpensPoint(second=datetime.fromtimestamp(s, UTC), opens=n) for s, n in points],
    )


async def engagement(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    waves: Sequence[int],
    *,
    now: datetime,
    since: datetime | None = None,
) -> EngagementOut:
    """A campaign's engagement: per wave (its `waves` indexes) and its opens per second."""
    sent = await ledger.counts_by_wave(session, campaign_id)
    figures = await by_wave(session, campaign_id)
    start, end, points = await opens_series(session, campaign_id, now=now, since=since)
    return EngagementOut(
        campaign_id=str(campaign_id),
        waves=wave_engagement(
            {w: sent.get(w, {}).get(DeliveryStatus.sent, 0) for w in waves}, figures
        ),
        since=start,
        until=end,
        opens_per_second=points,
    )
