"""Wave checks through the real engine: ticks, the sandbox provider's sends, PostgreSQL and
Redis, with a local HTTP server whose answer the test changes. A passing check lets the
next wave go; a failing one pauses the campaign (audited, the next wave never released);
a check that cannot be read holds the wave, then pauses it as inconclusive."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import select

from app.audit.models import AuditEvent
from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus
from app.checks import runner as wave_checks
from app.checks.evaluate import INCONCLUSIVE_LIMIT
from app.checks.spec import check_list
from app.db.types import utcnow
from app.rollout import engine
from app.runtime import Runtime
from tests.checks.local_server import LocalServer
from tests.checks.support import drive, results_of, waves_of
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, sender_deps


async def _start(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    server: LocalServer,
    own_checks: bool = True,
    **check: Any,
) -> uuid.UUID:
    await add_devices(db, 20)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    spec = {
        "name": "api health",
        "http": {"url": server.url + "/health", "json_field": "latency.p99_ms"},
        "pass_when": {"lte": 800},
        "interval_seconds": 2,
        **check,
    }
    rollout = {"waves": [{"percent": 50, "hold_seconds": 0}, {"percent": 100}], "checks": [spec]}
    if not own_checks:
        rollout["checks"] = []
    return await create_and_start(client, headers, campaign_body(rollout=rollout))


async def test_a_passing_check_lets_the_next_wave_go(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"latency": {"p99_ms": 640}})
    campaign_id = await _start(client, make_key, db, server)
    status, _now = await drive(db, campaign_id, ticks=30)
    assert status == CampaignStatus.completed
    waves = await waves_of(db, campaign_id)
    results = await results_of(db, campaign_id)
    first = [r for r in results if r.wave == 0]
    assert first and all(r.result == "pass" and r.value == 640 for r in first)
    # The next wave went only after the check had passed during the first.
    assert waves[1].released_at is not None
    assert min(r.observed_at for r in first) <= waves[1].released_at
    assert server.requests and all(path == "/health" for path, _q in server.requests)
    # Every interval during a wave, not every tick; from the release on.
    for wave in (0, 1):
        runs = sorted(r.observed_at for r in results if r.wave == wave)
        assert runs and all(b - a >= timedelta(seconds=2) for a, b in itertools.pairwise(runs))
        assert runs[0] >= waves[wave].released_at


async def test_a_failing_check_pauses_and_the_next_wave_never_goes(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"latency": {"p99_ms": 640}})
    campaign_id = await _start(client, make_key, db, server, failure_limit=2)
    # One failure, then a pass: below the limit, the run of failures ends.
    status, now = await drive(db, campaign_id, ticks=1)
    server.answer({"latency": {"p99_ms": 2400}})
    status, now = await drive(db, campaign_id, ticks=2, start=now + timedelta(seconds=1))
    assert status == CampaignStatus.running
    server.answer({"latency": {"p99_ms": 1900}})
    status, now = await drive(db, campaign_id, ticks=10, start=now + timedelta(seconds=1))
    assert status == CampaignStatus.paused
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        reason = "check 'api health' failed 2 times in a row: saw 1900, needs <= 800"
        assert campaign.status_reason == reason
        events = (
            await session.exec(select(AuditEvent).where(AuditEvent.subject_id == str(campaign_id)))
        ).all()
    paused = [e for e in events if e.action == "campaign.wave_checks_paused"]
    assert len(paused) == 1 and paused[0].reason == reason
    assert [r["value"] for r in paused[0].after["results"]][-2:] == [2400, 1900]
    assert any(e.action == "campaign.auto_pause" and e.reason == reason for e in events)
    waves = await waves_of(db, campaign_id)
    assert waves[1].status == "pending" and waves[1].released_at is None
    reader = bearer(await make_key(Scope.campaigns_read))
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=reader)).json()
    [shown] = view["check_results"]
    assert {k: shown[k] for k in ("name", "wave", "result", "value", "detail")} == {
        "name": "api health",
        "wave": 0,
        "result": "fail",
        "value": 1900,
        "detail": "<= 800",
    }
    # Paused: no more checks run, and the next wave stays where it is.
    asked = len(server.requests)
    server.answer({"latency": {"p99_ms": 100}})
    await drive(db, campaign_id, ticks=5, start=now + timedelta(seconds=1))
    assert len(server.requests) == asked
    assert (await waves_of(db, campaign_id))[1].released_at is None


async def test_an_unreadable_check_holds_the_wave_then_pauses_it(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"latency": {"p99_ms": "n/a"}})
    campaign_id = await _start(client, make_key, db, server, interval_seconds=1)
    status, now = await drive(db, campaign_id, ticks=INCONCLUSIVE_LIMIT - 1)
    # The first wave is sent and finished, its hold (0 s) long past: held by the check.
    waves = await waves_of(db, campaign_id)
    assert status == CampaignStatus.running
    assert waves[0].status == "finished" and waves[1].released_at is None
    status, now = await drive(db, campaign_id, ticks=5, start=now + timedelta(seconds=1))
    assert status == CampaignStatus.paused
    results = await results_of(db, campaign_id)
    assert [r.result for r in results] == ["inconclusive"] * INCONCLUSIVE_LIMIT
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, campaign_id)
    assert campaign is not None and campaign.status_reason is not None
    assert campaign.status_reason.startswith("checks inconclusive: check 'api health'")
    assert "not a number" in campaign.status_reason
    assert (await waves_of(db, campaign_id))[1].released_at is None


async def test_a_resumed_campaign_is_judged_on_what_its_checks_saw_since(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"latency": {"p99_ms": 5000}})
    campaign_id = await _start(client, make_key, db, server, interval_seconds=1)
    status, _now = await drive(db, campaign_id, ticks=20, real_time=True)
    assert status == CampaignStatus.paused
    headers = bearer(await make_key(Scope.campaigns_operate))
    resumed = await client.post(
        f"/v1/campaigns/{campaign_id}/resume",
        json={"reason": "the API was redeployed"},
        headers=headers,
    )
    assert resumed.status_code == 200, resumed.text
    server.answer({"latency": {"p99_ms": 300}})
    status, _now = await drive(db, campaign_id, ticks=40, real_time=True)
    assert status == CampaignStatus.completed
    assert (await waves_of(db, campaign_id))[1].released_at is not None


async def test_deployment_defaults_apply_to_a_live_campaign(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"p99_ms": 5000})
    default = check_list.validate_python(
        [
            {
                "name": "edge",
                "http": {"url": server.url, "json_field": "p99_ms"},
                "pass_when": {"lt": 1000},
            }
        ]
    )
    settings = db.settings.model_copy(update={"default_checks": default})
    live = await _start(client, make_key, db, server, own_checks=False)
    status, _now = await drive(db, live, ticks=10, settings=settings)
    assert status == CampaignStatus.paused
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, live)
    assert campaign is not None
    assert campaign.status_reason == "check 'edge' failed once: saw 5000, needs < 1000"


async def test_two_workers_running_the_same_round_store_it_once(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"latency": {"p99_ms": 640}})
    campaign_id = await _start(client, make_key, db, server)
    deps = await sender_deps(db)
    try:
        now = utcnow()
        await engine.tick(db.sessionmaker, deps.control, db.settings, now=now)
    finally:
        await deps.control.watch.aclose()
    server.delay = 0.3
    later = now + timedelta(seconds=1)
    stored = await asyncio.gather(
        *(wave_checks.run_due(db.sessionmaker, db.settings, [campaign_id], later) for _ in "ab")
    )
    assert sorted(stored) == [0, 1]
    assert len(server.requests) == 2
    assert [r.result for r in await results_of(db, campaign_id)] == ["pass"]


async def test_a_default_added_later_under_a_campaign_checks_name_pauses_it(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime, server: LocalServer
) -> None:
    server.answer({"latency": {"p99_ms": 640}})
    campaign_id = await _start(client, make_key, db, server)
    clash = check_list.validate_python(
        [{"name": "api health", "builtin": "failure_rate", "pass_when": {"lt": 0.5}}]
    )
    settings = db.settings.model_copy(update={"default_checks": clash})
    status, _now = await drive(db, campaign_id, ticks=5, settings=settings)
    assert status == CampaignStatus.paused
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, campaign_id)
    assert campaign is not None and campaign.status_reason == wave_checks.INVALID
    assert await results_of(db, campaign_id) == []
