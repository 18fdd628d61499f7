"""The opens budget in the engine's tick: each second, every running campaign that declares
``throttle.max_opens_per_second`` gets the send rate `app.rollout.opens_budget` allows it.

The rate and its reason are stored on the campaign (shown by the API and the campaign page);
the tick's grant sync then publishes the lower of it and ``throttle.per_second`` to every
worker (`app.control.plane.Control.publish_campaign`), so it holds across all workers and
within a second, like any throttle change.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.control.plane import paced
from app.db.session import unit_of_work
from app.rollout import opens_budget as budget
from app.rollout import opens_repository as repo
from app.settings import Settings

log = logging.getLogger("wavecast.opens_budget")


def prior_of(settings: Settings) -> budget.OpensModel:
    return budget.prior_model(
        budget.Prior(
            open_rate=settings.opens_prior_open_rate,
            median_delay_seconds=settings.opens_prior_median_delay_seconds,
        )
    )


def by_age(per_second: Sequence[tuple[int, int]], now_second: int, horizon: int) -> list[int]:
    """Counts per Unix second as counts per age (``now_second - second``): ``horizon + 1``
    bins, the last holding everything older; a second after ``now_second`` counts as age 0."""
    bins = [0] * (horizon + 1)
    for second, n in per_second:
        bins[min(horizon, max(0, now_second - second))] += n
    return bins


def by_delay(per_delay: Sequence[tuple[int, int]], horizon: int) -> list[int]:
    bins = [0] * (horizon + 1)
    for delay, n in per_delay:
        bins[min(horizon, max(0, delay))] += n
    return bins


# A campaign's whole history (every second it sent in, every open's delay) is read at most
# this often; the ticks between read again only the sends of the last RECENT_SECONDS (a
# range of ix_delivery_campaign_sent_at) and the recent opens. Reading the whole history every
# second cost a pass over the campaign's ledger per tick (about 200 ms at 100,000 rows, and
# growing with the audience). The kernel is estimated from the whole history, so it is at
# most this old; the sends it is applied to, and the feedback, are at most a tick old.
FULL_READ_SECONDS = 5.0
RECENT_SECONDS = 30


@dataclass(slots=True)
class _History:
    read_at: float
    """Unix time of the last full read."""
    sends: dict[int, int]
    """Sends per Unix second."""
    delays: list[tuple[int, int]]
    """(Seconds from send to open, opens)."""


# Per campaign, in the process that ticks (one at a time holds the tick lock; a process that
# takes it over reads the history afresh once its copy is FULL_READ_SECONDS old).
_histories: dict[uuid.UUID, _History] = {}


async def _history(session: AsyncSession, campaign_id: uuid.UUID, now: datetime) -> _History:
    at = now.timestamp()
    history = _histories.get(campaign_id)
    if history is None or not 0.0 <= at - history.read_at < FULL_READ_SECONDS:
        history = _History(
            read_at=at,
            sends=dict(await repo.sends_per_second(session, campaign_id)),
            delays=await repo.opens_by_delay(session, campaign_id),
        )
        _histories[campaign_id] = history
        return history
    # Seconds from `first` on are read again whole: a batch's sends are recorded a moment
    # after their `sent_at`, so a recent second may have grown since the last read.
    first = int(at) - RECENT_SECONDS
    fresh = await repo.sends_per_second(
        session, campaign_id, since=datetime.fromtimestamp(first, tz=UTC)
    )
    for second in [s for s in history.sends if s >= first]:
        del history.sends[second]
    history.sends.update(fresh)
    return history


def forget_others(running: Sequence[uuid.UUID]) -> None:
    """Drop the histories of campaigns no longer running with a budget."""
    for campaign_id in set(_histories) - set(running):
        del _histories[campaign_id]


async def decide_for(
    session: AsyncSession,
    settings: Settings,
    campaign_id: uuid.UUID,
    *,
    max_opens_per_second: int,
    per_second: int,
    now: datetime,
) -> budget.Decision:
    """What the budget allows the campaign now, from its sends and opens so far."""
    prior = prior_of(settings)
    horizon = len(prior.kernel)
    now_second = int(now.timestamp())
    history = await _history(session, campaign_id, now)
    sends = by_age(list(history.sends.items()), now_second, horizon)
    delays = by_delay(history.delays, horizon)
    model = budget.estimate(sends, delays, prior)
    since = now - timedelta(
        seconds=budget.FEEDBACK_WINDOW_SECONDS + budget.FEEDBACK_LAG_SECONDS + 1
    )
    recent = by_age(await repo.opens_per_second(session, campaign_id, since), now_second, horizon)
    scale = budget.feedback_scale(sends, recent, model.kernel)
    return budget.decide(
        model,
        sends,
        budget=float(max_opens_per_second),
        # The cap the throttle enforces for throttle.per_second (the pace below it).
        per_second=paced(float(per_second)),
        scale=scale,
    )


async def steer(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, now: datetime
) -> int:
    """Set the effective rate of every running campaign with an opens budget; returns how
    many. One campaign's failure is logged and leaves the others (and its last rate) alone."""
    async with unit_of_work(sessionmaker) as session:
        campaigns = await repo.budgeted_running(session)
    forget_others([campaign_id for campaign_id, _, _ in campaigns])
    for campaign_id, max_opens, per_second in campaigns:
        try:
            async with unit_of_work(sessionmaker) as session:
                decision = await decide_for(
                    session,
                    settings,
                    campaign_id,
                    max_opens_per_second=max_opens,
                    per_second=per_second,
                    now=now,
                )
                await repo.set_effective(
                    session, campaign_id, round(decision.per_second, 2), decision.reason
                )
        except Exception:
            log.exception("opens budget: no new rate", extra={"campaign_id": str(campaign_id)})
    return len(campaigns)
