"""The opens budget's reads per tick: the whole history at most every FULL_READ_SECONDS, and
in between only the last RECENT_SECONDS of sends, merged into what was read. The merged
history must equal a full read for every second the recent read covers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from app.auth.models import Scope
from app.control.plane import Control
from app.db.session import unit_of_work
from app.delivery.models import Delivery, DeliveryStatus
from app.rollout import engine
from app.rollout import opens_control as control
from app.rollout import opens_repository as repo
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, deliveries

OPERATOR = (Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)


async def _mark_sent(db: Runtime, ids: list[int], at: datetime) -> None:
    async with unit_of_work(db.sessionmaker) as session:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))  # type: ignore[union-attr]
            .values(status=DeliveryStatus.sent.value, sent_at=at)
        )


async def _full(db: Runtime, campaign_id: uuid.UUID) -> dict[int, int]:
    async with db.sessionmaker() as session:
        return dict(await repo.sends_per_second(session, campaign_id))


async def _merged(db: Runtime, campaign_id: uuid.UUID, now: datetime) -> dict[int, int]:
    async with db.sessionmaker() as session:
        return dict((await control._history(session, campaign_id, now)).sends)


async def test_recent_reads_merge_into_the_full_history(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 60)
    headers = bearer(await make_key(*OPERATOR))
    body = campaign_body(
        rollout={"waves": [{"percent": 100}]},
        throttle={"per_second": 2000, "max_opens_per_second": 10},
    )
    campaign_id = await create_and_start(client, headers, body)
    ctl = Control(db.redis)
    try:
        await engine.tick(db.sessionmaker, ctl, db.settings)
    finally:
        await ctl.watch.aclose()
    rows = sorted(r.id for r in await deliveries(db, campaign_id) if r.id is not None)
    assert len(rows) == 60
    t0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    # 10 sends 100 s before t0, 10 at t0 - 5 s.
    await _mark_sent(db, rows[0:10], t0 - timedelta(seconds=100))
    await _mark_sent(db, rows[10:20], t0 - timedelta(seconds=5, milliseconds=300))
    control._histories.pop(campaign_id, None)
    assert await _merged(db, campaign_id, t0) == await _full(db, campaign_id)

    # Two seconds later: more sends in a second already read, and in a new one.
    t1 = t0 + timedelta(seconds=2)
    await _mark_sent(db, rows[20:25], t0 - timedelta(seconds=5, milliseconds=700))
    await _mark_sent(db, rows[25:30], t1 - timedelta(milliseconds=200))
    merged = await _merged(db, campaign_id, t1)
    assert merged == await _full(db, campaign_id)
    assert merged[int((t0 - timedelta(seconds=5)).timestamp()) - 1] == 15

    # A send recorded now for a second older than RECENT_SECONDS waits for the next full read.
    t2 = t0 + timedelta(seconds=3)
    old = t0 - timedelta(seconds=control.RECENT_SECONDS + 10)
    await _mark_sent(db, rows[30:34], old)
    assert int(old.timestamp()) not in await _merged(db, campaign_id, t2)
    t3 = t0 + timedelta(seconds=control.FULL_READ_SECONDS)
    assert await _merged(db, campaign_id, t3) == await _full(db, campaign_id)
    assert (await _merged(db, campaign_id, t3))[int(old.timestamp())] == 4

    # A clock that went back reads everything afresh.
    await _mark_sent(db, rows[34:40], old)
    assert (await _merged(db, campaign_id, t0))[int(old.timestamp())] == 10
    control.forget_others([])
    assert campaign_id not in control._histories
