"""The claim reads the rows due by now, earliest first, from ix_delivery_claimable_due: a
local-time backlog that is not due yet neither blocks the rows that are nor is walked by each
claim (on PostgreSQL the plan is a range of that index, checked with EXPLAIN)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import ColumnElement, Update, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from app.audiences.service import audience_filter
from app.auth.models import Scope
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger, partitions
from app.delivery.models import Delivery, DeliveryStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    create_and_start,
    deliveries,
    tick_until_released,
)

_delivery = Delivery.__table__  # type: ignore[attr-defined]


async def _released(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, devices: int
) -> list[int]:
    """A running campaign's whole audience in the ledger, queued; its row ids in order."""
    await add_devices(db, devices)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await tick_until_released(db, campaign_id, devices)
    return sorted(r.id for r in await deliveries(db, campaign_id) if r.id is not None)


async def _campaign_of(db: Runtime, row: int) -> uuid.UUID:
    async with db.sessionmaker() as session:
        query = select(_delivery.c.campaign_id).where(_delivery.c.id == row)
        found: uuid.UUID = (await session.execute(query)).scalar_one()
        return found


async def _claim(
    session: AsyncSession, campaign_id: uuid.UUID, limit: int, now: datetime
) -> list[ledger.Claimed]:
    return await ledger.claim(
        session,
        campaign_id=campaign_id,
        limit=limit,
        lease_token=uuid.uuid4(),
        lease_until=now + timedelta(minutes=1),
        now=now,
    )


async def test_rows_due_are_claimed_earliest_first_past_a_backlog_that_waits(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    ids = await _released(client, make_key, db, 40)
    campaign_id = await _campaign_of(db, ids[0])
    now = utcnow()
    # The last rows are due, in the reverse of their id order; one more is a retry that is
    # due; a retry without a due time is never claimed; everything else waits for tomorrow.
    due = {ids[-1]: now - timedelta(minutes=3), ids[-2]: now - timedelta(minutes=2)}
    due[ids[-3]] = now - timedelta(minutes=1)
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(_delivery).values(next_attempt_at=now + timedelta(days=1), status="queued")
        )
        for row, at in due.items():
            await session.execute(
                update(_delivery).where(_delivery.c.id == row).values(next_attempt_at=at)
            )
        await session.execute(
            update(_delivery)
            .where(_delivery.c.id == ids[-4])
            .values(status=DeliveryStatus.retrying.value, next_attempt_at=now)
        )
        await session.execute(
            update(_delivery)
            .where(_delivery.c.id == ids[0])
            .values(status=DeliveryStatus.retrying.value, next_attempt_at=None)
        )
        # Queued without a due time: due at once, ahead of every dated row.
        await session.execute(
            update(_delivery).where(_delivery.c.id == ids[1]).values(next_attempt_at=None)
        )

    claimed: list[list[int]] = []
    async with unit_of_work(db.sessionmaker) as session:
        assert await ledger.has_claimable(session, campaign_id, now)
        for _ in range(3):
            batch = await _claim(session, campaign_id, 2, now)
            claimed.append([c.delivery_id for c in batch])
        assert not await ledger.has_claimable(session, campaign_id, now)

    # Each batch picks the rows due earliest (and returns them in id order).
    assert claimed == [[ids[1], ids[-1]], [ids[-3], ids[-2]], [ids[-4]]]
    # A day later the backlog is due, in id order (one due time), the dead retry still not.
    async with unit_of_work(db.sessionmaker) as session:
        later = now + timedelta(days=1)
        rest = await _claim(session, campaign_id, 100, later)
    assert [c.delivery_id for c in rest] == ids[2:-4]


async def test_on_postgresql_the_claim_reads_a_range_of_the_due_index(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    if not is_postgres:
        return  # the plan is PostgreSQL's; SQLite has the same index and the same query
    ids = await _released(client, make_key, db, 3000)
    campaign_id = await _campaign_of(db, ids[0])
    now = utcnow()
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(update(_delivery).values(next_attempt_at=now + timedelta(days=1)))
        month = await ledger.ledger_month(session, campaign_id)
    # Next month's partition beside this month's: the plan must read this month's only.
    await partitions.ensure_ahead(db.engine, now)
    async with db.engine.connect() as conn:
        await conn.execute(text("ANALYZE delivery"))
        await conn.commit()
    picking = (
        select(_delivery.c.id)
        .where(ledger._claimable(campaign_id, now))
        .order_by(*ledger._claim_order)
        .limit(500)
        .with_for_update(skip_locked=True)
    )
    sql = picking.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    async with db.engine.connect() as conn:
        plan = "\n".join(
            r[0] for r in await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"))
        )
    # The campaign's partition's copy of the index (app.delivery.partitions names it
    # <partition>_claimable_due); the other partitions are pruned when the statement runs.
    assert f"Index Scan using {partitions.table_name(month)}_claimable_due" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan
    assert "never executed" in plan or "Subplans Removed" in plan, plan


async def _explain(conn: AsyncConnection, statement: Update) -> Any:
    """EXPLAIN (ANALYZE, FORMAT JSON) of a statement, its parameters bound as when it runs."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    positions = compiled.positiontup or []
    sql = f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}"
    return (await conn.exec_driver_sql(sql, tuple(params[p] for p in positions))).scalar_one()


def _claim_statement(
    campaign_id: uuid.UUID, limit: int, now: datetime, audience: ColumnElement[bool] | None
) -> Update:
    """The claim's statement on PostgreSQL, as `ledger.claim` runs it."""
    return ledger.claim_statement(
        campaign_id=campaign_id,
        limit=limit,
        lease_token=uuid.uuid4(),
        lease_until=now + timedelta(minutes=1),
        now=now,
        audience=audience,
        postgresql=True,
    )


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


async def test_on_postgresql_a_claim_touches_only_the_rows_it_picks(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    """The whole claim statement (pick, audience verdict, lease, the device's columns) with
    the statistics a month's partition has when a campaign is released into it after an
    earlier one was sent: no step of its plan reads more rows than the claim's limit, nothing
    is sorted, and nothing is read whole. With those statistics the planner took a new
    campaign's claimable rows for a few, and sorted all of them for each batch; or it joined
    the pick to the campaign's whole partition and to every device."""
    if not is_postgres:
        return  # the plan is PostgreSQL's
    earlier = await _released(client, make_key, db, 4000)
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(_delivery)
            .where(_delivery.c.id.in_(earlier))
            .values(status=DeliveryStatus.sent.value, sent_at=utcnow())
        )
    async with db.engine.connect() as conn:
        await conn.execute(text("ANALYZE delivery"))
        await conn.execute(text("ANALYZE device"))
        await conn.commit()
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await tick_until_released(db, campaign_id, 4000)
    async with db.sessionmaker() as session:
        month = await ledger.ledger_month(session, campaign_id)
    now = utcnow()
    limit = 100
    audience = audience_filter({"everyone": True}, now=now)
    for rules in (audience, None):
        statement = _claim_statement(campaign_id, limit, now, rules)
        async with db.sessionmaker() as session:
            async with ledger.planned_by_index(session):
                plan = await _explain(await session.connection(), statement)
            # Given back as they were once the claim is done.
            assert (await session.execute(text("SHOW enable_sort"))).scalar_one() == "on"
            await session.rollback()
        nodes = list(_nodes(plan[0]["Plan"]))
        widest = max(nodes, key=lambda n: n["Actual Rows"])
        assert widest["Actual Rows"] <= limit, json.dumps(plan, indent=1)
        kinds = {n["Node Type"] for n in nodes}
        assert not kinds & {"Hash Join", "Merge Join", "Sort", "Bitmap Heap Scan"}, plan
        scanned = {n.get("Relation Name") for n in nodes if n["Node Type"] == "Seq Scan"}
        assert not scanned & {"device", partitions.table_name(month)}, plan
        # The claim leased `limit` rows.
        assert nodes[0]["Actual Rows"] == limit, plan


async def test_on_postgresql_only_the_rows_a_claim_takes_are_judged(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    """The pick walks past rows another claimer holds; the audience is judged (one device
    read each) only for the rows this claim takes."""
    if not is_postgres:
        return  # the plan is PostgreSQL's
    ids = await _released(client, make_key, db, 300)
    campaign_id = await _campaign_of(db, ids[0])
    now = utcnow()
    limit = 100
    statement = _claim_statement(
        campaign_id, limit, now, audience_filter({"everyone": True}, now=now)
    )
    async with db.sessionmaker() as other, db.sessionmaker() as session:
        # Another claimer holds the first 150 rows.
        held = select(_delivery.c.id).where(_delivery.c.id.in_(ids[:150])).with_for_update()
        assert len((await other.execute(held)).all()) == 150
        async with ledger.planned_by_index(session):
            plan = await _explain(await session.connection(), statement)
        await session.rollback()
        await other.rollback()
    nodes = list(_nodes(plan[0]["Plan"]))
    assert nodes[0]["Actual Rows"] == limit, plan
    # The pick read the 150 held rows and the 100 it took.
    [pick] = [n for n in nodes if n["Node Type"] == "LockRows"]
    assert pick["Plans"][0]["Actual Rows"] == 250, json.dumps(plan, indent=1)
    judged = [
        n
        for n in nodes
        if n.get("Relation Name") == "device" and n.get("Parent Relationship") == "SubPlan"
    ]
    assert [n["Actual Loops"] for n in judged] == [limit], json.dumps(plan, indent=1)
