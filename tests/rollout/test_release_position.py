"""Release planning reads the campaign's order on from where it stopped (its plan position),
and a release bounds a large audience instead of counting it before the first chunk.

Whatever the position, a chunk is the reference's continuation of the order; a device that
joins the audience behind the position comes first once swept; a release that only bounded
the audience never adds more than its wave, and the next tick sizes the wave exactly.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from app.audiences.service import audience_filter
from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns import service as campaigns_service
from app.campaigns.state import CampaignStatus
from app.db.session import unit_of_work
from app.db.types import utcnow
from app.delivery import ledger
from app.rollout import engine
from app.rollout.bucketing import device_bucket
from app.rollout.planner import cumulative_target, reference_order, reference_waves
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    deliveries,
    run_engine,
    sender_deps,
)


async def _start(client: httpx.AsyncClient, make_key: KeyMaker, waves: list[int]) -> uuid.UUID:
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    body = campaign_body(rollout={"waves": [{"percent": str(p)} for p in waves]})
    return await create_and_start(client, headers, body)


async def _plan(
    db: Runtime,
    campaign_id: uuid.UUID,
    limit: int,
    position: ledger.PlanPosition | None,
    *,
    sweep: bool = True,
    wave: int = 0,
    add: bool = True,
) -> list[ledger.Candidate]:
    """One chunk: read from `position`, and (with `add`) put it in the ledger."""
    async with unit_of_work(db.sessionmaker) as session:
        campaign = await campaigns_service.get(session, campaign_id)
        members = await ledger.plan_members(
            session,
            campaign_id=campaign_id,
            rotation=campaign.rotation,
            audience=audience_filter(campaign.audience_rules, now=utcnow()),
            limit=limit,
            position=position,
            sweep_behind=sweep,
        )
        if add:
            await ledger.add_members(
                session,
                campaign_id=campaign_id,
                wave=wave,
                device_ids=[m.device_id for m in members],
                now=utcnow(),
            )
    return members


async def test_chunks_read_from_the_plan_position_are_the_reference_order(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    ids = await add_devices(db, 160)
    campaign_id = await _start(client, make_key, [100])
    async with db.sessionmaker() as session:
        rotation = (await campaigns_service.get(session, campaign_id)).rotation
    order = reference_order(ids, rotation)
    # The order wraps round the bucket space at the rotation: some chunk crosses from the
    # devices at or after it to those before it.
    sides = {device_bucket(d) >= rotation for d in order}
    assert sides == {True, False}, "every device on one side of the rotation"
    position = None
    read: list[uuid.UUID] = []
    for limit in [1, 7, 13, 29, 3, 50, 100]:
        chunk = await _plan(db, campaign_id, limit, position)
        assert [c.device_id for c in chunk] == order[len(read) : len(read) + limit]
        assert not any(c.behind for c in chunk)
        read += [c.device_id for c in chunk]
        position = ledger.plan_position(chunk, position)
        if chunk:
            assert position == chunk[-1].position
    assert read == order
    # Past the end: nothing, and the position stays.
    assert await _plan(db, campaign_id, 10, position) == []
    assert ledger.plan_position([], position) == position


async def test_a_device_that_joins_behind_the_position_comes_first_when_swept(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, is_postgres: bool
) -> None:
    ids = await add_devices(db, 90)
    campaign_id = await _start(client, make_key, [100])
    async with db.sessionmaker() as session:
        rotation = (await campaigns_service.get(session, campaign_id)).rotation
    first = await _plan(db, campaign_id, 45, None)
    position = ledger.plan_position(first, None)
    assert position is not None
    held = {c.device_id for c in first}
    joined = await add_devices(db, 60)
    order = reference_order(ids + joined, rotation)
    key = order.index(position.device_id)
    behind = [d for d in order[:key] if d not in held]
    # New devices land all over the order: some of them behind what was planned.
    assert behind, "no new device fell behind the position; the test proves nothing"
    assert set(behind) <= set(joined)
    expected = [d for d in order if d not in held]
    swept = await _plan(db, campaign_id, 200, position, add=False)
    # The reference's choice: the devices not in the ledger, in the order, joiners first.
    assert [c.device_id for c in swept] == expected
    if is_postgres:
        assert [c.device_id for c in swept if c.behind] == behind
        # Without the sweep (a later chunk of a wave already swept) only what lies ahead.
        ahead = await _plan(db, campaign_id, 200, position, sweep=False, add=False)
        assert [c.device_id for c in ahead] == expected[len(behind) :]
        # A sweep cut short by the limit leaves the rest for the next chunk.
        short = await _plan(db, campaign_id, len(behind) - 1 or 1, position, add=False)
        assert [c.device_id for c in short] == expected[: len(short)]
        assert all(c.behind for c in short)
        # Joiners never move the position: it marks how far the order was planned.
        assert ledger.plan_position(swept[: len(behind)], position) == position


async def _audit(db: Runtime, action: str) -> list[dict[str, object]]:
    async with db.sessionmaker() as session:
        rows = await session.execute(
            select(AuditEvent.after)  # type: ignore[call-overload]
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
        )
        return list(rows.scalars().all())


async def test_a_release_that_only_bounds_the_audience_stays_inside_its_wave(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 devices, waves 10 % and 100 %, first chunks of 5, at most 30 devices counted at
    release: 10 % of at least 30 devices is at least 3, so the release adds 3 (not 5), and
    the next tick counts the 200, sizes the wave at 20 and adds the rest."""
    monkeypatch.setattr(engine, "RELEASE_CHUNK_ROWS", 5)
    monkeypatch.setattr(engine, "RELEASE_MORE_ROWS", 50)
    monkeypatch.setattr(engine, "RELEASE_COUNT_ROWS", 30)
    ids = await add_devices(db, 200)
    campaign_id = await _start(client, make_key, [10, 100])
    deps = await sender_deps(db)
    report = await engine.tick(db.sessionmaker, deps.control, db.settings)
    assert [(wave, count) for _, wave, count in report.released] == [(0, 3)]
    expected = reference_waves(ids, campaign_id, [Decimal(10), Decimal(100)])
    rows = await deliveries(db, campaign_id)
    assert {r.device_id for r in rows} == set(expected[0][:3])
    [released] = await _audit(db, "campaign.wave_released")
    assert released["audience_size"] is None and released["target"] is None
    assert released["audience_at_least"] == 30
    async with db.sessionmaker() as session:
        [wave, _] = await campaigns_service.waves(session, campaign_id)
        assert (wave.audience_size, wave.target_count) == (None, None)
    report = await engine.tick(db.sessionmaker, deps.control, db.settings)
    assert [(w, count) for _, w, count in report.released] == [(0, 17)]
    [sized] = await _audit(db, "campaign.wave_sized")
    assert sized == {"wave": 0, "target": 20, "held": 0, "members": 20, "audience_size": 200}
    async with db.sessionmaker() as session:
        [wave, _] = await campaigns_service.waves(session, campaign_id)
        assert (wave.audience_size, wave.target_count) == (200, 20)
    await run_engine(db, campaign_id)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed
    rows = await deliveries(db, campaign_id)
    for index, members in enumerate(expected):
        assert {r.device_id for r in rows if r.wave <= index} == set(members)
    assert {r.status for r in rows} == {"sent"}


def test_the_count_bound_covers_the_ledger_and_a_chunk_within_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "RELEASE_CHUNK_ROWS", 5_000)
    monkeypatch.setattr(engine, "RELEASE_COUNT_ROWS", 1_000_000)
    # 1 % of 499,901 rounds up to the whole first chunk.
    assert engine._count_bound(Decimal(1), 0) == 499_901
    # 0.1 %: a whole chunk needs 4,999,001 devices; the budget's million gives 1,000.
    assert engine._count_bound(Decimal("0.1"), 0) == 1_000_000
    # 25 % over a ledger of 500,000: the wave adds a device only from 2,000,001 devices on,
    # beyond the budget, so the count goes as far as a whole chunk needs.
    assert engine._count_bound(Decimal(25), 500_000) == 2_019_997
    assert engine._count_bound(Decimal(5), 100_000) == 2_099_981
    # Exact at the edge: ceil(p · bound) covers the ledger plus the chunk, one fewer would not.
    for percent, held in [(Decimal("33.3333"), 12_345), (Decimal(7), 0), (Decimal(100), 9)]:
        bound = engine._count_bound(percent, held)
        assert cumulative_target(percent, bound) >= held + 1
        if bound < 1_000_000:
            assert cumulative_target(percent, bound) >= held + 5_000
            assert cumulative_target(percent, bound - 1) < held + 5_000
