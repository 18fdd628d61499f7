"""The worker's side of the send gate: permits renewed, fences closed by a stop or by losing
Redis, requests waiting to start cancelled, and a stop that answers only once nothing can
start (real Redis; a Redis client on a dead port stands for a lost Redis)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from app.auth.models import Scope
from app.control import plane as control_module
from app.control.fence import FENCE_SECONDS, Fence, GateWatch
from app.control.gate import GLOBAL_KEY, PERMITS_KEY, Gate, GateClosed, Renewal
from app.control.plane import Control
from app.delivery.providers.base import current_fence, may_start
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.reliability.support import free_port
from tests.support import add_devices, campaign_body, create_and_start


async def _open(gate: Gate, campaign_id: uuid.UUID, version: int = 1) -> None:
    await gate.set_global(True, 1)
    await gate.set_campaign(campaign_id, True, version)


async def _until_closed(fence: Fence, within: float = 5.0) -> None:
    for _ in range(int(within / 0.01)):
        if not fence.open():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the fence stayed open for {within}s")


@pytest.fixture
async def watch(db: Runtime) -> AsyncIterator[GateWatch]:
    w = GateWatch(Gate(db.redis))
    yield w
    await w.aclose()


async def test_renew_extends_held_permits_and_says_which_grants_closed(db: Runtime) -> None:
    gate = Gate(db.redis)
    running, stopped = uuid.uuid4(), uuid.uuid4()
    await _open(gate, running)
    await gate.set_campaign(stopped, True, 1)
    a = await gate.acquire(running, 0.5)
    b = await gate.acquire(stopped, 0.5)
    await gate.set_campaign(stopped, False, 2)
    assert await gate.renew([(running, a), (stopped, b)], 3.0) == [Renewal.open, Renewal.closed]
    # Renewed past their first half second, both are still counted: a stop waits for the
    # closed one too, whose requests may still be on the wire.
    await asyncio.sleep(0.7)
    assert await gate.in_flight(running) == 1
    assert await gate.in_flight(stopped) == 1
    await gate.release(stopped, b)
    assert await gate.renew([(stopped, b)], 3.0) == [Renewal.lost]
    await gate.set_global(False, 2)
    assert await gate.renew([(running, a)], 3.0) == [Renewal.closed]


async def test_an_expired_permit_is_lost_not_renewed(db: Runtime) -> None:
    gate = Gate(db.redis)
    campaign = uuid.uuid4()
    await _open(gate, campaign)
    permit = await gate.acquire(campaign, 0.1)
    await asyncio.sleep(0.2)
    assert await gate.renew([(campaign, permit)], 3.0) == [Renewal.lost]
    assert await db.redis.zcard(PERMITS_KEY) == 0


async def test_a_closed_grant_closes_the_fence_and_cancels_what_waits_to_start(
    db: Runtime, watch: GateWatch
) -> None:
    gate = Gate(db.redis)
    campaign = uuid.uuid4()
    await _open(gate, campaign)
    async with watch.permit(campaign) as fence:
        assert fence.open()
        outcome: list[str] = []

        async def request_waiting_for_a_connection() -> None:
            waiter = fence.waiting()
            assert waiter is not None
            try:
                await asyncio.sleep(60)  # a connection, a stream, credit: never comes
                outcome.append("started")
            except asyncio.CancelledError:
                if fence.stopped(waiter):
                    outcome.append("stopped")
                    return
                raise

        waiting = asyncio.create_task(request_waiting_for_a_connection())
        await asyncio.sleep(0.2)
        assert fence.open(), "renewals keep an open gate's fence open"
        closed_at = time.monotonic()
        await gate.set_campaign(campaign, False, 2)
        await asyncio.wait_for(waiting, timeout=2)
        heard = time.monotonic() - closed_at
        assert outcome == ["stopped"]
        assert not waiting.cancelled(), "the fence's cancellation was taken back"
        assert not fence.open()
        assert "stopped" in fence.why_closed
        assert fence.waiting() is None, "nothing registers behind a closed fence"
        # The renewal runs every 50 ms: the worker hears of the stop within a few of them.
        assert heard < 0.5, f"the fence closed {heard:.3f}s after the grant"
    assert await gate.in_flight(campaign) == 0, "leaving the permit releases it"


async def test_a_task_cancelled_for_another_reason_is_not_taken_for_a_stop(
    db: Runtime, watch: GateWatch
) -> None:
    gate = Gate(db.redis)
    campaign = uuid.uuid4()
    await _open(gate, campaign)
    async with watch.permit(campaign) as fence:

        async def waits() -> bool:
            waiter = fence.waiting()
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                return fence.stopped(waiter)
            return False

        task = asyncio.create_task(waits())
        await asyncio.sleep(0.05)
        task.cancel()
        assert await task is False
        assert fence.open()


async def test_a_worker_that_loses_redis_stops_starting_requests_within_the_bound(
    db: Runtime,
) -> None:
    gate = Gate(db.redis)
    campaign = uuid.uuid4()
    await _open(gate, campaign)
    # The permit is taken while Redis answers; the renewals then go to a Redis that is gone
    # (a port nobody listens on): the same worker, cut off.
    lost = Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    watch = GateWatch(Gate(db.redis))
    try:
        async with watch.permit(campaign) as fence:
            confirmed = time.monotonic()
            watch._gate = Gate(lost)
            waiter_done = asyncio.Event()

            async def waits() -> None:
                waiter = fence.waiting()
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    assert fence.stopped(waiter)
                    waiter_done.set()

            task = asyncio.create_task(waits())
            await _until_closed(fence)
            lapsed = time.monotonic() - confirmed
            await asyncio.wait_for(waiter_done.wait(), timeout=1)
            await task
        # The last confirmation was the permit itself: the fence closes FENCE_SECONDS later
        # (plus this loop's 10 ms polling), never sooner and not much later.
        assert FENCE_SECONDS - 0.05 <= lapsed <= FENCE_SECONDS + 0.25, lapsed
        assert "Redis unreachable" in fence.why_closed
    finally:
        await watch.aclose()
        await lost.aclose()


async def test_requests_ask_the_fence_of_their_batch(db: Runtime, watch: GateWatch) -> None:
    gate = Gate(db.redis)
    campaign = uuid.uuid4()
    await _open(gate, campaign)
    assert may_start(), "outside a batch nothing is fenced"
    async with watch.permit(campaign) as fence:
        current_fence.set(fence)
        try:
            assert may_start()
            await db.redis.delete(GLOBAL_KEY)  # Redis lost the grants: closed
            await _until_closed(fence)
            assert not may_start()
        finally:
            current_fence.set(None)


async def test_a_closed_gate_gives_no_permit(db: Runtime, watch: GateWatch) -> None:
    campaign = uuid.uuid4()
    with pytest.raises(GateClosed):
        async with watch.permit(campaign):
            pass


async def test_a_stop_whose_permits_are_still_held_answers_503_then_200_when_drained(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch still holding its permit when the answer is due (a slow provider's requests
    on the wire): the stop is recorded, says it is not yet confirmed, and confirms on retry
    once the permit is released."""
    monkeypatch.setattr(control_module, "STOP_DRAIN_SECONDS", 0.3)
    await add_devices(db, 10)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    killer = bearer(await make_key(Scope.kill))
    campaign_id = await create_and_start(client, operator, campaign_body())
    gate = Control(db.redis).gate
    await gate.set_global(True, 1)
    permit = await gate.acquire(campaign_id, 30)  # a worker's batch, mid-send
    first = await client.post(
        f"/v1/campaigns/{campaign_id}/kill", json={"reason": "wrong copy"}, headers=killer
    )
    assert first.status_code == 503, first.text
    assert first.headers["retry-after"] == "1"
    assert "not yet confirmed" in first.json()["title"]
    assert "1 batch" in first.json()["detail"]
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=operator)).json()
    assert view["status"] == "killed", "the stop is recorded whatever the answer"
    await gate.release(campaign_id, permit)
    again = await client.post(
        f"/v1/campaigns/{campaign_id}/kill", json={"reason": "wrong copy"}, headers=killer
    )
    assert again.status_code == 200, again.text
    assert again.json()["in_flight_at_answer"] == 0


async def test_a_pause_asked_again_confirms_without_a_second_transition(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 5)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(client, operator, campaign_body())
    path = f"/v1/campaigns/{campaign_id}/pause"
    first = await client.post(path, json={"reason": "checking"}, headers=operator)
    again = await client.post(path, json={"reason": "checking"}, headers=operator)
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert again.json()["campaign"]["status"] == "paused"
    events = (
        await client.get("/v1/audit", params={"action": "campaign.pause"}, headers=operator)
    ).json()["items"]
    assert len(events) == 1
