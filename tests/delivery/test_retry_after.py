"""Retry-After from FCM holds back every request from the instant the answer is seen.

Through the FCM protocol fake, the real firebase-admin client, the engine's tick and the
sender, the suite's database and Redis. The evidence is the fake's own request records: no
request may arrive inside a window opened by the 429, from the instant the worker process knew
of it until the provider's Retry-After has passed (the fake's answer + Retry-After).

The window opens when the process heard its own block published on the throttle's blocks
channel (`Throttle.block_until`), which it writes right after holding the block locally: no
later than the process knew. It does not open when the fake wrote the 429. A process reads an
answer when its event loop next polls the socket; on a loaded machine that is tens of
milliseconds later, and requests written meanwhile were written by a process that could not
have known. CI counted 38 such requests. On this machine under load, such requests were
written (the transport's last look) 0.6 to 14 ms after the fake's answer, and the process
learned of the block 65 ms after it.

The fake runs in its own process, as the benchmark runs it: in a thread of this one it shares
the interpreter lock with the client, and when it gets it late it stamps requests the client
wrote before the 429 went out as arriving after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, select
from wavecast_tools.bench import stack
from wavecast_tools.bench.stack import request_of

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.control.plane import Control
from app.db.types import utcnow
from app.delivery.sender import pump
from app.devices import service as devices_service
from app.devices.models import Device
from app.devices.schemas import DeviceRegistration
from app.rollout import engine
from app.runtime import Runtime
from app.settings import ProviderMode, Settings
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body, campaign_status, create_and_start, deliveries, sender_deps

DEVICES = 600
RATE = 1_000


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[stack.Fake]:
    with stack.fake("fcm", tmp_path_factory.mktemp("retry-after")) as fake:
        yield fake


async def test_no_request_leaves_inside_a_retry_after_window(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, fcm: stack.Fake
) -> None:
    fcm.clear_rules()
    fcm.forget_records()
    settings = db.settings.model_copy(
        update={
            "provider": ProviderMode.real,
            "fcm_credentials": Path(fcm.env["WAVECAST_FCM_CREDENTIALS"]),
            "fcm_endpoint": fcm.env["WAVECAST_FCM_ENDPOINT"],
        }
    )
    now = utcnow()
    rows = [
        devices_service.registration_row(
            DeviceRegistration(token=f"ra-{i}", platform="android"),  # type: ignore[arg-type]
            now,
        )
        for i in range(DEVICES)
    ]
    async with db.sessionmaker() as session:
        # QA phones: outside production a real provider reaches test devices only.
        await session.execute(
            insert(Device.__table__),  # type: ignore[attr-defined]
            [row | {"is_test_device": True} for row in rows],
        )
        await session.commit()
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    # Two send loops share the worker's FCM provider. The first request is refused after
    # 50 ms, as a real provider takes to answer (a call is wholly on the wire before it): the
    # other loop's next call, and the refused call's own later requests, must wait for the
    # Retry-After from the instant the answer is seen, not from when the refused call returns.
    refusal = fcm.add_rule(error="QUOTA_EXCEEDED", count=1, retry_after=1, latency=0.05)
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 100}]}, throttle={"per_second": RATE}),
    )
    async with _heard_blocks(db) as heard:
        await _run_two_pumps(db, campaign_id, settings)
    assert await campaign_status(db, campaign_id) is CampaignStatus.completed

    sends = sorted(fcm.records(), key=lambda r: float(r["monotonic"]))
    requests = [request_of(r) for r in sends]
    assert [r["applied"] for r in fcm.rules() if r["id"] == refusal] == [1]
    [refused] = [r for r in requests if r.status == 429]
    assert refused.retry_after == 1.0
    # The block was heard after the fake wrote the answer that asked for it (both clocks are
    # the machine's monotonic one), and well before the provider's window closed. (The sender
    # lengthens it once more when the refused call returns: a second publication.)
    assert heard, "no block was published"
    opened, closes = heard[0], refused.end + refused.retry_after
    assert refused.end < opened < closes - 0.5, (refused.end, opened, closes)
    inside = [r for r in requests if opened < r.start < closes]
    assert inside == [], (
        f"{len(inside)} requests arrived after the worker knew of the block "
        f"({opened - refused.end:.3f} s after the 429) and before it ended"
    )

    # Every device was accepted exactly once, and a row's attempts are the requests the
    # provider saw for it: rows held back by the block did not spend an attempt.
    accepted = Counter(r["token"] for r in sends if r["status"] == 200)
    assert sorted(accepted) == sorted(f"ra-{i}" for i in range(DEVICES))
    assert set(accepted.values()) == {1}
    seen = Counter(r["token"] for r in sends)
    ledger = await deliveries(db, campaign_id)
    assert {r.status for r in ledger} == {"sent"}
    tokens = {d.id: d.token for d in await _devices(db)}
    assert {tokens[r.device_id]: r.attempts for r in ledger} == dict(seen)


@contextlib.asynccontextmanager
async def _heard_blocks(db: Runtime) -> AsyncIterator[list[float]]:
    """The monotonic instants at which this process heard a provider block published."""
    heard: list[float] = []
    pubsub = db.redis.pubsub()
    await pubsub.subscribe(Control(db.redis).throttle.blocks_channel)

    async def listen() -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                heard.append(time.monotonic())

    listening = asyncio.create_task(listen())
    try:
        yield heard
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await pubsub.aclose()


async def _devices(db: Runtime) -> list[Device]:
    async with db.sessionmaker() as session:
        return list((await session.execute(select(Device))).scalars().all())


async def _run_two_pumps(db: Runtime, campaign_id: uuid.UUID, settings: Settings) -> None:
    """Tick and send as one worker with two send loops on the campaign would."""
    deps = await sender_deps(db, settings)
    for _ in range(600):
        report = await engine.tick(db.sessionmaker, deps.control, settings)
        if campaign_id in report.sendable:
            await asyncio.gather(
                pump(deps, campaign_id, budget_seconds=10),
                pump(deps, campaign_id, budget_seconds=10),
            )
        if await campaign_status(db, campaign_id) is CampaignStatus.completed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"campaign {campaign_id} did not complete")
