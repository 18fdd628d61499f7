"""What the tick reads of a sending wave each second (its failures, its sends up to a bound,
whether a row is still open) and, once, when it finishes (its rows per status)."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import text, update

from app.auth.models import Scope
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger, partitions
from app.delivery.models import OPEN_STATUSES, Delivery, DeliveryStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.delivery.test_ledger_claim_due import _explain, _nodes
from tests.support import (
    add_devices,
    campaign_body,
    create_and_start,
    deliveries,
    tick_until_released,
)

_delivery = Delivery.__table__  # type: ignore[attr-defined]


async def test_counts_in_wave_are_that_waves_rows_by_status(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 40)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    body = campaign_body(rollout={"waves": [{"percent": 100}]})
    campaign_id = await create_and_start(client, headers, body)
    await tick_until_released(db, campaign_id, 40)
    rows = sorted(r.id for r in await deliveries(db, campaign_id) if r.id is not None)
    async with unit_of_work(db.sessionmaker) as session:
        for status, ids in (
            (DeliveryStatus.sent, rows[:20]),
            (DeliveryStatus.failed, rows[20:23]),
            (DeliveryStatus.retrying, rows[23:25]),
            (DeliveryStatus.sending, rows[25:26]),
        ):
            await session.execute(
                update(_delivery).where(_delivery.c.id.in_(ids)).values(status=status.value)
            )
    async with db.sessionmaker() as session:
        counts = await ledger.counts_in_wave(session, campaign_id, 0)
        assert counts == (await ledger.counts_by_wave(session, campaign_id))[0]
        assert await ledger.counts_in_wave(session, campaign_id, 1) == {}
        held = await ledger.count_in_wave(session, campaign_id, 0)
    assert counts == {"sent": 20, "failed": 3, "retrying": 2, "sending": 1, "queued": 14}
    assert sum(counts.values()) == held == 40
    async with db.sessionmaker() as session:
        for status, n in counts.items():
            exact = await ledger.count_with_status(session, campaign_id, 0, DeliveryStatus(status))
            assert exact == n, status
            for upto in (1, n - 1, n, n + 1, 1000):
                if upto >= 1:
                    assert await ledger.count_with_status(
                        session, campaign_id, 0, DeliveryStatus(status), upto=upto
                    ) == min(n, upto), (status, upto)
        assert await ledger.count_with_status(session, campaign_id, 1, DeliveryStatus.sent) == 0
        assert await ledger.any_open_in_wave(session, campaign_id, 0)
        assert not await ledger.any_open_in_wave(session, campaign_id, 1)
    # Each open status alone keeps the wave open; with none left it is not.
    for open_status in OPEN_STATUSES:
        async with unit_of_work(db.sessionmaker) as session:
            await session.execute(
                update(_delivery)
                .where(_delivery.c.id.in_(rows))
                .values(status=DeliveryStatus.sent.value)
            )
            await session.execute(
                update(_delivery).where(_delivery.c.id == rows[-1]).values(status=open_status.value)
            )
        async with db.sessionmaker() as session:
            assert await ledger.any_open_in_wave(session, campaign_id, 0), open_status
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(_delivery).where(_delivery.c.id == rows[-1]).values(status="cancelled")
        )
    async with db.sessionmaker() as session:
        assert not await ledger.any_open_in_wave(session, campaign_id, 0)


async def test_on_postgresql_the_ticks_reads_do_not_read_the_wave_whole(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    """A wave of 3,000 rows, all sent but its last three, one of them still open, with the
    statistics taken while every row was queued: whether a row is open and the sends counted
    up to a bound read no more rows than they answer with, and nothing is read whole."""
    if not is_postgres:
        return  # the plan is PostgreSQL's
    await add_devices(db, 3000)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    await tick_until_released(db, campaign_id, 3000)
    async with db.engine.connect() as conn:
        await conn.execute(text("ANALYZE delivery"))
        await conn.commit()
    rows = sorted(r.id for r in await deliveries(db, campaign_id) if r.id is not None)
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(_delivery)
            .where(_delivery.c.id.in_(rows[:-3]))
            .values(status=DeliveryStatus.sent.value, sent_at=utcnow())
        )
        await session.execute(
            update(_delivery).where(_delivery.c.id.in_(rows[-3:-1])).values(status="failed")
        )
    async with db.sessionmaker() as session:
        month = await ledger.ledger_month(session, campaign_id)
        for query, answer in (
            (ledger.any_open_query(campaign_id, 0), 1),
            (ledger.count_with_status_query(campaign_id, 0, DeliveryStatus.sent, 50), 50),
            (ledger.count_with_status_query(campaign_id, 0, DeliveryStatus.failed, 50), 2),
        ):
            async with ledger.planned_by_index(session):
                plan = await _explain(await session.connection(), query)
            nodes = list(_nodes(plan[0]["Plan"]))
            widest = max(nodes, key=lambda n: n["Actual Rows"] * n.get("Actual Loops", 1))
            assert widest["Actual Rows"] <= answer, json.dumps(plan, indent=1)
            scanned = {n.get("Relation Name") for n in nodes if n["Node Type"] == "Seq Scan"}
            assert partitions.table_name(month) not in scanned, plan
        await session.rollback()
