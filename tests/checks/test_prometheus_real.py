"""A campaign's `prometheus` check against a real Prometheus server, through a real worker.

Prometheus (Debian's package) scrapes a small backend every second; the backend exposes
``backend_error_ratio``, which the test sets. A `wavecast worker` process runs the campaign
on the sandbox provider and reads the check through Prometheus's HTTP API: a healthy ratio
lets the next wave go, a bad one pauses the campaign naming the value and the condition
(the next wave never released), and a query with no series holds the wave until it pauses
as inconclusive. Skipped, with the reason, when the binary is absent, unless
WAVECAST_REQUIRE_PROMETHEUS is set (CI), where its absence fails.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select
from wavecast_tools.prometheus import (
    METRIC,
    REQUIRE_ENV,
    MetricBackend,
    binary,
    prometheus_server,
    wait_for_value,
)

from app.audit.models import AuditEvent
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

if binary() is None:
    if os.environ.get(REQUIRE_ENV):
        raise RuntimeError(
            f"{REQUIRE_ENV} is set but prometheus is not installed (apt-get install prometheus)"
        )
    pytest.skip(
        "prometheus is not installed (Debian package `prometheus`); set "
        f"{REQUIRE_ENV}=1 to make its absence a failure",
        allow_module_level=True,
    )

DEVICES = 20


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MetricBackend, str]]:
    work: Path = tmp_path_factory.mktemp("prometheus")
    with MetricBackend(0.01) as backend, prometheus_server(backend, work) as url:
        yield backend, url


def _check(url: str, query: str = METRIC) -> dict[str, Any]:
    return {
        "name": "backend errors",
        "prometheus": {"url": url, "query": query},
        "pass_when": {"lt": 0.02},
        "interval_seconds": 1,
        "failure_limit": 1,
    }


async def _run(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    check: dict[str, Any],
    until: set[CampaignStatus],
) -> tuple[uuid.UUID, CampaignStatus]:
    await add_devices(db, DEVICES)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    rollout = {
        "waves": [{"percent": 50, "hold_seconds": 2}, {"percent": 100}],
        "checks": [check],
    }
    with worker_processes(db.settings):
        await workers_alive(db, 1)
        campaign_id = await create_and_start(client, headers, campaign_body(rollout=rollout))

        async def settled() -> CampaignStatus | None:
            status = await campaign_status(db, campaign_id)
            return status if status in until else None

        status = await wait_for(settled, within=90, interval=0.2)
    return campaign_id, status


async def test_a_healthy_backend_lets_the_next_wave_go(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    prometheus: tuple[MetricBackend, str],
) -> None:
    backend, url = prometheus
    backend.set(0.01)
    wait_for_value(url, 0.01)
    campaign_id, status = await _run(
        client, make_key, db, _check(url), {CampaignStatus.completed, CampaignStatus.paused}
    )
    assert status == CampaignStatus.completed
    results = await results_of(db, campaign_id)
    first = [r for r in results if r.wave == 0]
    assert first and all(r.result == "pass" and r.value == 0.01 for r in first)
    waves = await waves_of(db, campaign_id)
    assert waves[1].released_at is not None
    assert min(r.observed_at for r in first) <= waves[1].released_at
    assert await sandbox_count(db, campaign_id) == DEVICES


async def test_a_failing_backend_pauses_the_campaign_before_the_next_wave(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    prometheus: tuple[MetricBackend, str],
) -> None:
    backend, url = prometheus
    backend.set(0.25)
    wait_for_value(url, 0.25)
    campaign_id, status = await _run(
        client, make_key, db, _check(url), {CampaignStatus.completed, CampaignStatus.paused}
    )
    assert status == CampaignStatus.paused
    reason = "check 'backend errors' failed once: saw 0.25, needs < 0.02"
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status_reason == reason
        events = (
            await session.exec(select(AuditEvent).where(AuditEvent.subject_id == str(campaign_id)))
        ).all()
    assert any(e.action == "campaign.auto_pause" and e.reason == reason for e in events)
    waves = await waves_of(db, campaign_id)
    assert waves[1].released_at is None and waves[1].status == "pending"
    # Only the first wave's devices were sent.
    assert await sandbox_count(db, campaign_id) == DEVICES // 2


async def test_a_query_without_data_holds_the_wave_then_pauses_as_inconclusive(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    prometheus: tuple[MetricBackend, str],
) -> None:
    backend, url = prometheus
    backend.set(0.01)
    started = time.monotonic()
    campaign_id, status = await _run(
        client,
        make_key,
        db,
        _check(url, query='backend_error_ratio{job="no-such-job"}'),
        {CampaignStatus.completed, CampaignStatus.paused},
    )
    assert status == CampaignStatus.paused
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status_reason is not None
        assert campaign.status_reason.startswith(
            f"checks inconclusive: check 'backend errors' gave no usable answer "
            f"{INCONCLUSIVE_LIMIT} times in a row"
        )
    results = await results_of(db, campaign_id)
    assert len(results) >= INCONCLUSIVE_LIMIT
    assert all(r.result == "inconclusive" for r in results)
    # Missing data never passed: the hold of 2 s ran out long before, and wave 2 never went.
    waves = await waves_of(db, campaign_id)
    assert waves[1].released_at is None
    assert time.monotonic() - started >= INCONCLUSIVE_LIMIT
