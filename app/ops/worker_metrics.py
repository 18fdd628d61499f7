"""The worker's Prometheus metrics, in a registry of their own.

`wavecast worker` (and the worker inside `wavecast run`) serves this registry on
WAVECAST_WORKER_METRICS_PORT (`workers.metrics`); the API serves the global one. A registry of
its own keeps the two apart in one process: the embedded all-in-one, and the tests.

The send path counts per batch (`Counter.inc(n)`), never per row. The gauges describe the
whole deployment, not this process: they are read from the database by `refresh_gauges`
when a scrape finds them older than a few seconds, so they cost nothing between scrapes and
every worker answers the same.
"""

from __future__ import annotations

import math
from collections import Counter as Tally
from collections.abc import Set
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import ColumnElement, ScalarSelect, func, literal, or_, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.delivery import partitions
from app.delivery.models import Delivery, DeliveryStatus
from app.killswitch.models import SWITCH_ID, KillSwitch

REGISTRY = CollectorRegistry(auto_describe=True)

# The names the API's module (`app.ops.metrics`) gave these two, kept: same meaning.
DELIVERIES = Counter(
    "wavecast_deliveries_total",
    "Claimed rows by outcome: the ledger status recorded, or given_back (returned untouched, "
    "not an attempt); provider none for rows decided before any provider saw them",
    ["provider", "outcome"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "wavecast_provider_request_seconds",
    "Seconds one provider call took for one batch (all its requests)",
    ["provider"],
    registry=REGISTRY,
)
THROTTLE_WAIT = Histogram(
    "wavecast_worker_throttle_wait_seconds",
    "Seconds a batch waited for throttle tokens: scope campaign for the campaign's own rate, "
    "or the provider's name for its provider-wide cap",
    ["scope"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
# Counted up to this many: the count walks the claimable index, so it is bounded to keep a
# scrape cheap when a wave of millions was just released.
CLAIMABLE_COUNT_CAP = 100_000
CLAIMABLE_ROWS = Gauge(
    "wavecast_worker_claimable_rows",
    "Ledger rows a sender could claim now (queued or retrying, and due, of running "
    f"campaigns); counted up to {CLAIMABLE_COUNT_CAP}, which then means at least that many",
    registry=REGISTRY,
)
CAMPAIGNS = Gauge("wavecast_worker_campaigns", "Campaigns by status", ["status"], registry=REGISTRY)
KILL_SWITCH = Gauge(
    "wavecast_worker_kill_switch_engaged",
    "The global kill switch: 1 engaged, 0 released",
    registry=REGISTRY,
)


LEDGER_PARTITIONS = Gauge(
    "wavecast_worker_ledger_partitions",
    "The delivery ledger's attached partitions, one a month (PostgreSQL; NaN on SQLite, whose "
    "ledger is one table)",
    registry=REGISTRY,
)
LEDGER_MONTHS_AHEAD = Gauge(
    "wavecast_worker_ledger_months_ahead",
    "Months after the current one whose ledger partitions exist, in a row: 1 when next "
    "month's is made (the worker makes it at start-up and hourly), 0 when it is missing, -1 "
    "when this month's is (PostgreSQL; NaN on SQLite)",
    registry=REGISTRY,
)
LEDGER_PARTITIONS_DROPPED = Counter(
    "wavecast_worker_ledger_partitions_dropped",
    "Ledger partitions this process dropped whole: months whose campaigns all ended and were "
    "pruned (WAVECAST_LEDGER_RETENTION_DAYS)",
    registry=REGISTRY,
)


def count_outcomes(outcomes: Tally[tuple[str, str]]) -> None:
    """Add one batch's outcomes, tallied by (provider, outcome)."""
    for (provider, outcome), n in outcomes.items():
        DELIVERIES.labels(provider, outcome).inc(n)


async def refresh_gauges(session: AsyncSession, now: datetime) -> None:
    """Read the claimable rows, the campaigns by status, the kill switch and the ledger's
    partitions (a look at the catalog): four small queries, the first bounded by
    CLAIMABLE_COUNT_CAP."""
    CLAIMABLE_ROWS.set(await _claimable_rows(session, now))
    by_status = dict(
        (
            await session.execute(
                select(col(Campaign.status), func.count()).group_by(col(Campaign.status))
            )
        ).all()
    )
    for status in CampaignStatus:
        CAMPAIGNS.labels(status.value).set(by_status.get(status.value, 0))
    switch = select(col(KillSwitch.engaged)).where(col(KillSwitch.id) == SWITCH_ID)
    engaged = (await session.execute(switch)).scalar_one_or_none()
    KILL_SWITCH.set(1 if engaged else 0)
    if session.get_bind().dialect.name == "postgresql":
        months = set(await partitions.existing(session))
        LEDGER_PARTITIONS.set(len(months))
        LEDGER_MONTHS_AHEAD.set(months_ahead(months, partitions.month_of(now)))
    else:
        LEDGER_PARTITIONS.set(math.nan)
        LEDGER_MONTHS_AHEAD.set(math.nan)


def months_ahead(months: Set[int], current: int) -> int:
    """How many months after `current` have a partition, counting from the next one until the
    first that has none; -1 when `current` itself has none."""
    if current not in months:
        return -1
    ahead = 0
    while current + ahead + 1 in months:
        ahead += 1
    return ahead


async def _claimable_rows(session: AsyncSession, now: datetime) -> int:
    """What `ledger.claim` could take now over every running campaign: queued rows that are
    due (no due time, or one that has come: a local time, the end of quiet hours), and
    retrying rows that are due. Two bounded counts in one statement, each on one status
    (`status IN (...) AND (... OR ...)`, the claim's own form, makes PostgreSQL read every
    claimable row into a bitmap before the limit): the queued count walks
    ix_delivery_campaign_status_id and stops at the cap; the retrying count reads that
    index's retrying range of the running campaigns (few rows, outside a provider outage)."""
    running = select(col(Campaign.id)).where(col(Campaign.status) == CampaignStatus.running)
    in_running = col(Delivery.campaign_id).in_(running)
    status = col(Delivery.status)
    waited_for = col(Delivery.next_attempt_at)
    queued = _bounded_count(
        in_running,
        status == DeliveryStatus.queued,
        or_(waited_for.is_(None), waited_for <= now),
    )
    due = _bounded_count(
        in_running, status == DeliveryStatus.retrying, col(Delivery.next_attempt_at) <= now
    )
    total = int((await session.execute(select(queued + due))).scalar_one())
    return min(total, CLAIMABLE_COUNT_CAP)


def _bounded_count(*where: ColumnElement[bool]) -> ScalarSelect[int]:
    rows = select(literal(1)).select_from(Delivery).where(*where).limit(CLAIMABLE_COUNT_CAP)
    return select(func.count()).select_from(rows.subquery()).scalar_subquery()
