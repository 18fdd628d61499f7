"""The tick's one read of a sending wave: its rows per status, from which it takes how many
members the wave holds and whether any is still open."""

from __future__ import annotations

import httpx
from sqlalchemy import update

from app.auth.models import Scope
from app.db.session import unit_of_work
from app.delivery import ledger
from app.delivery.models import OPEN_STATUSES, Delivery, DeliveryStatus
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


def test_open_counts_exactly_the_open_statuses() -> None:
    for status in DeliveryStatus:
        for n in (0, 1, 7):
            expected = n if status in OPEN_STATUSES else 0
            assert ledger.open_of({status.value: n}) == expected, status
    every = {status.value: 1 for status in DeliveryStatus}
    assert ledger.open_of(every) == len(OPEN_STATUSES) == 3
    assert ledger.open_of({}) == 0


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
    assert ledger.open_of(counts) == 17
