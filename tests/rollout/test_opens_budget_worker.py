"""The opens budget holding against an app population, through a real worker process.

A `wavecast worker` sends a campaign through the real firebase-admin client into the FCM
fake; the population (wavecast_tools.simulator) opens half the pushes it received after a
couple of seconds and reports each open to POST /v1/events. Without the budget the
campaign's throttle (200 sends/s) would cause about 100 opens/s; with a budget of 20/s the
worker must pace it, first on the deployment's prior, then on the campaign's own events,
and the API must say so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wavecast_tools.fakes.fcm import FcmFake
from wavecast_tools.simulator import AppPopulation, RecordStoreSource, busiest_window, running

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import (
    add_devices,
    campaign_body,
    campaign_status,
    create_and_start,
    wait_for,
    worker_processes,
    workers_alive,
)

BUDGET = 20
DEVICES = 300
OPEN_RATE = 0.5


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FcmFake, Path]]:
    root = tmp_path_factory.mktemp("opens")
    fake = FcmFake(project_id="wavecast-opens")
    with fake.running_in_thread():
        account = root / "service-account.json"
        fake.create_service_account(account)
        yield fake, account


async def test_the_opens_budget_holds_against_the_population(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    fcm: tuple[FcmFake, Path],
) -> None:
    fake, account = fcm
    fake.store.clear()
    # Outside production a real provider reaches test devices only.
    await add_devices(db, DEVICES, test_devices=DEVICES)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    reporter = bearer(await make_key(Scope.events_write))
    body = campaign_body(
        # The first wave's ~30 opens are more than the 20 the estimate waits for.
        rollout={"waves": [{"percent": 20, "hold_seconds": 3}, {"percent": 100}]},
        throttle={"per_second": 200, "max_opens_per_second": BUDGET},
    )
    population = AppPopulation(
        source=RecordStoreSource(fake.store),
        events=client,
        open_rate=OPEN_RATE,
        median_delay=2.0,
        sigma=0.5,
        seed=16,
    )
    client.headers.update(reporter)
    seen_reasons: set[str] = set()
    rates: list[float] = []
    with worker_processes(
        db.settings,
        WAVECAST_PROVIDER="real",
        WAVECAST_FCM_CREDENTIALS=str(account),
        WAVECAST_FCM_ENDPOINT=fake.url,
    ):
        await workers_alive(db, 1)
        async with running(population):
            campaign_id = await create_and_start(client, operator, body)
            # Generous: a machine shared with other test runs may send slowly.
            deadline = time.monotonic() + 400
            while await campaign_status(db, campaign_id) != CampaignStatus.completed:
                assert time.monotonic() < deadline, "the campaign did not complete in time"
                view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=operator)).json()
                throttle = view["throttle"]
                assert throttle["max_opens_per_second"] == BUDGET
                if throttle["effective_per_second"] is not None:
                    assert 1 <= throttle["effective_per_second"] <= 200
                    rates.append(throttle["effective_per_second"])
                seen_reasons.add(throttle["effective_reason"])
                await asyncio.sleep(0.5)

            # The opens of the last sends still come in after the campaign completes.
            async def settled() -> bool:
                return not population.pending()

            await wait_for(settled, within=30, interval=0.2)
    assert population.delivered == DEVICES
    assert population.rejected == 0
    assert len(population.opens) == pytest.approx(DEVICES * OPEN_RATE, rel=0.2)
    # Paced first by the prior, then by what the campaign's own opens showed.
    assert any("predicted from the deployment's prior" in r for r in seen_reasons)
    assert any("predicted from this campaign's events" in r for r in seen_reasons)
    busiest = busiest_window(population.opens, 5)
    # The budget held: the busiest 5 s of opens, with room for the noise of ~100 taps...
    assert busiest <= BUDGET * 1.3, (busiest, seen_reasons)
    # ... and the budget did not simply hold the campaign back: the engine let it send far
    # faster than the budget's opens once it knew only half the pushes are opened, later.
    assert max(rates) >= 2 * BUDGET, rates
