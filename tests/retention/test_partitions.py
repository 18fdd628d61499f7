"""The ledger's month partitions (app.delivery.partitions): a campaign's rows live in its
month's partition and their ids name it; partitions are made ahead; a month whose campaigns
are all pruned is dropped whole, and its campaigns keep their figures and audit trail. The
month arithmetic on any backend; the partitions on PostgreSQL (SQLite keeps one table)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from app.audit import repository as audit_repo
from app.auth.models import Scope
from app.auth.principal import SYSTEM
from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import partitions, retention
from app.ops.worker_metrics import REGISTRY
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, deliveries, run_engine
from workers.main import build_worker
from workers.retention import prune_ledger

DAYS = 30


def test_months_count_from_january_2000_and_round_trip() -> None:
    assert partitions.month_of(datetime(2000, 1, 1, tzinfo=UTC)) == 1
    assert partitions.month_of(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == 324
    assert partitions.month_of(datetime(2027, 1, 1, tzinfo=UTC)) == 325
    for month in range(1, 2000):
        start = partitions.month_start(month)
        assert partitions.month_of(start) == month
        assert partitions.month_of(start - timedelta(microseconds=1)) == month - 1
    with pytest.raises(ValueError, match="month 0"):
        partitions.month_start(0)


def test_a_ref_names_its_month_and_stays_exact_as_a_javascript_number() -> None:
    month = partitions.month_of(datetime(2026, 12, 6, tzinfo=UTC))
    ref = (month << partitions.MONTH_SHIFT) + 123_456_789
    assert partitions.month_of_ref(ref) == month
    assert partitions.months_of_refs([ref, 7]) == [0, month]
    # Row ids stay below 2**53 for centuries of months.
    assert (partitions.month_of(datetime(2500, 12, 1, tzinfo=UTC)) + 1) << 40 < 2**53
    assert partitions.is_partition_name("delivery_m324")
    assert partitions.is_partition_name("delivery_legacy")
    assert not partitions.is_partition_name("delivery")
    assert not partitions.is_partition_name("delivery_m")


async def _where(db: Runtime, campaign_id: uuid.UUID) -> set[tuple[str, int]]:
    """(partition, month the id names) of each of a campaign's rows."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tableoid::regclass::text, id >> 40 FROM delivery WHERE campaign_id = :c"),
            {"c": campaign_id},
        )
        return {(r[0], int(r[1])) for r in rows}


async def _headers(make_key: KeyMaker) -> dict[str, str]:
    return bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )


async def test_a_campaigns_rows_live_in_its_months_partition_and_their_refs_find_them(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    await add_devices(db, 30)
    campaign_id = await create_and_start(client, await _headers(make_key), campaign_body())
    await run_engine(db, campaign_id)
    month = partitions.month_of(utcnow())
    rows = await deliveries(db, campaign_id)
    assert len(rows) == 30 and {r.ledger_month for r in rows} == {month}
    if is_postgres:
        assert await _where(db, campaign_id) == {(f"delivery_m{month}", month)}
    writer = bearer(await make_key(Scope.events_write))
    events = [{"ref": str(r.id), "type": "opened", "at": utcnow().isoformat()} for r in rows]
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.json() == {"accepted": 30, "duplicates": 0, "rejected": []}


async def test_partitions_are_made_ahead_once(db: Runtime, is_postgres: bool) -> None:
    if not is_postgres:
        assert await partitions.ensure_ahead(db.engine, utcnow()) == []
        return
    far = datetime(2031, 5, 17, tzinfo=UTC)
    month = partitions.month_of(far)
    try:
        assert await partitions.ensure_ahead(db.engine, far) == [month, month + 1]
        assert await partitions.ensure_ahead(db.engine, far) == []
        async with db.engine.connect() as conn:
            present = await partitions.existing(conn)
            indexes = await conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE tablename = :t"),
                {"t": f"delivery_m{month}"},
            )
            names = {r[0] for r in indexes}
        assert present[month] == f"delivery_m{month}" and month + 1 in present
        assert f"delivery_m{month}_claimable_due" in names
        assert f"delivery_m{month}_pkey" in names
        assert f"delivery_m{month}_campaign_device" in names
    finally:
        await partitions.drop(db.engine, month)
        await partitions.drop(db.engine, month + 1)
    async with db.engine.connect() as conn:
        assert month not in await partitions.existing(conn)


async def _in_month(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    month: int,
    *,
    run: bool = True,
) -> uuid.UUID:
    """A campaign created in `month` (its ledger month set before its first release); with
    `run`, started and sent to completion, with an open reported for each push; without, a
    draft."""
    headers = await _headers(make_key)
    body = campaign_body(rollout={"waves": [{"percent": 50, "hold_seconds": 0}, {"percent": 100}]})
    if run:
        campaign_id = await create_and_start(client, headers, body)
    else:
        created = await client.post("/v1/campaigns", json=body, headers=headers)
        assert created.status_code == 201, created.text
        campaign_id = uuid.UUID(created.json()["id"])
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)  # type: ignore[arg-type]
            .values(ledger_month=month)
        )
    if not run:
        return campaign_id
    await run_engine(db, campaign_id)
    rows = await deliveries(db, campaign_id)
    writer = bearer(await make_key(Scope.events_write))
    events = [{"ref": r.id, "type": "opened", "at": utcnow().isoformat()} for r in rows]
    answer = await client.post("/v1/events", json=events, headers=writer)
    assert answer.json()["accepted"] == len(rows)
    return campaign_id


async def _end(db: Runtime, campaign_id: uuid.UUID, status: CampaignStatus) -> None:
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)  # type: ignore[arg-type]
            .values(status=status, finished_at=utcnow() - timedelta(days=DAYS + 5))
        )


DROPPED = "wavecast_worker_ledger_partitions_dropped_total"


def _job_context(db: Runtime, *, retention_days: int) -> dict[str, Any]:
    """A worker's context as its ledger job reads it: the runtime's sessions and settings."""
    settings = db.settings.model_copy(update={"ledger_retention_days": retention_days})
    runtime = SimpleNamespace(settings=settings, sessionmaker=db.sessionmaker)
    return {"wavecast": SimpleNamespace(runtime=runtime)}


async def test_a_month_is_dropped_whole_once_every_campaign_of_it_is_pruned(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("PostgreSQL partitions the ledger; SQLite deletes in batches")
    await add_devices(db, 40)
    month = partitions.month_of(utcnow()) - 3
    reader = await _headers(make_key)
    first = await _in_month(client, make_key, db, month)
    assert await _where(db, first) == {(f"delivery_m{month}", month)}
    await _end(db, first, CampaignStatus.completed)
    view = (await client.get(f"/v1/campaigns/{first}", headers=reader)).json()
    waiting = await _in_month(client, make_key, db, month, run=False)  # a draft of that month

    # The month still holds a campaign that may send: the first one's rows go by DELETE.
    dropped: list[int] = []
    done = await retention.prune(
        db.sessionmaker, SYSTEM, retention_days=DAYS, now=utcnow(), on_dropped=dropped.append
    )
    assert [(p.campaign_id, p.rows) for p in done] == [(first, 40)]
    assert month not in dropped
    async with db.engine.connect() as conn:
        assert month in await partitions.existing(conn)
    assert await _where(db, first) == set()

    # A second campaign of that month sends; then the draft is cancelled: the month goes whole.
    second = await _in_month(client, make_key, db, month)
    await _end(db, second, CampaignStatus.killed)
    await _end(db, waiting, CampaignStatus.cancelled)
    second_view = (await client.get(f"/v1/campaigns/{second}", headers=reader)).json()
    async with db.sessionmaker() as session:
        preview = await retention.droppable_months(session, now=utcnow(), pruning=[second])
        assert month in preview
        # Without the second campaign being pruned, the month is held.
        assert month not in await retention.droppable_months(session, now=utcnow())
    # This time through the worker's hourly job, which counts what it drops.
    counted = REGISTRY.get_sample_value(DROPPED) or 0.0
    job = _job_context(db, retention_days=DAYS)
    assert await prune_ledger(job) == {"campaigns": 1, "rows": 40, "events": 40}
    assert REGISTRY.get_sample_value(DROPPED) == counted + 1
    async with db.engine.connect() as conn:
        assert month not in await partitions.existing(conn)
        gone = await conn.execute(text("SELECT to_regclass(:t)"), {"t": f"delivery_m{month}"})
        assert gone.scalar_one() is None
    # Both keep every figure they showed, and the audit log has each prune.
    for campaign_id, before in ((first, view), (second, second_view)):
        after = (await client.get(f"/v1/campaigns/{campaign_id}", headers=reader)).json()
        assert after["waves"] == before["waves"]
        async with db.sessionmaker() as session:
            events = await audit_repo.list_events(
                session, limit=100, subject_type="campaign", subject_id=str(campaign_id)
            )
        assert retention.AUDIT_ACTION in {e.action for e in events}
    # A campaign of this month sends on, beside whatever went.
    fresh = await create_and_start(client, reader, campaign_body())
    await run_engine(db, fresh)
    assert {r.status for r in await deliveries(db, fresh)} == {"sent"}


async def test_a_worker_makes_next_months_partition_when_it_starts(
    db: Runtime, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("PostgreSQL partitions the ledger")
    following = partitions.month_of(utcnow()) + 1
    await partitions.drop(db.engine, following)
    worker = build_worker(db.settings, burst=True, max_burst_jobs=2)
    try:
        await worker.main()
    finally:
        await worker.close()
    async with db.engine.connect() as conn:
        assert following in await partitions.existing(conn)
