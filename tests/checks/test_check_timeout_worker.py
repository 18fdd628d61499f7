"""A check whose source never answers, through a real worker: every run times out, the wave
is held (a timeout is never a pass), and after the inconclusive limit the campaign pauses for
a person, naming the timeout. The source is a socket that accepts and then says nothing, the
way a hung backend behaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.checks.evaluate import INCONCLUSIVE_LIMIT
from app.runtime import Runtime
from tests.checks.support import results_of, waves_of
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    sandbox_count,
    wait_for,
    worker_processes,
    workers_alive,
)

DEVICES = 20
INTERVAL = 1


@pytest.fixture
async def silent_backend() -> AsyncIterator[tuple[str, list[float]]]:
    """A server that accepts each connection, reads the request and never answers."""
    accepted: list[float] = []
    open_writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(time.monotonic())
        open_writers.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        for writer in open_writers:
            writer.close()
        server.close()


async def test_a_check_that_times_out_holds_the_wave_then_pauses_it(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    silent_backend: tuple[str, list[float]],
) -> None:
    url, accepted = silent_backend
    await add_devices(db, DEVICES)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    check = {
        "name": "backend errors",
        "prometheus": {"url": url, "query": "backend_error_ratio"},
        "pass_when": {"lt": 0.02},
        "interval_seconds": INTERVAL,
    }
    rollout = {"waves": [{"percent": 50, "hold_seconds": 0}, {"percent": 100}], "checks": [check]}
    started = time.monotonic()
    with worker_processes(db.settings):
        await workers_alive(db, 1)
        campaign_id = await create_and_start(client, headers, campaign_body(rollout=rollout))

        async def settled() -> CampaignStatus | None:
            status = await campaign_status(db, campaign_id)
            return status if status in {CampaignStatus.completed, CampaignStatus.paused} else None

        status = await wait_for(settled, within=90, interval=0.2)

    assert status == CampaignStatus.paused, "a source that never answers must not promote"
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status_reason is not None
    assert campaign.status_reason.startswith(
        f"checks inconclusive: check 'backend errors' gave no usable answer "
        f"{INCONCLUSIVE_LIMIT} times in a row"
    ), campaign.status_reason
    assert f"did not answer within {INTERVAL} s" in campaign.status_reason
    results = await results_of(db, campaign_id)
    assert len(results) >= INCONCLUSIVE_LIMIT
    assert all(r.result == "inconclusive" and r.value is None for r in results)
    assert all(r.detail and "did not answer within" in r.detail for r in results)
    # The worker really asked, once per run, and waited for an answer that never came.
    assert len(accepted) >= INCONCLUSIVE_LIMIT
    waves = await waves_of(db, campaign_id)
    assert waves[1].released_at is None, "the hold was 0 s: only the checks held wave 2"
    assert await sandbox_count(db, campaign_id) == DEVICES // 2
    assert time.monotonic() - started >= INCONCLUSIVE_LIMIT * INTERVAL
