"""Every stop is one structured log line; a worker's tick that changed nothing says nothing
at INFO."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta

import httpx
import pytest

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.db.types import utcnow
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, run_engine
from workers.main import build_worker


async def test_a_kill_through_the_api_logs_one_line_naming_who_why_and_what(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await add_devices(db, 20)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(client, operator, campaign_body())
    killer = bearer(await make_key(Scope.kill, name="on-call"))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        answer = await client.post(
            f"/v1/campaigns/{campaign_id}/kill", json={"reason": "wrong audience"}, headers=killer
        )
    assert answer.status_code == 200, answer.text
    lines = [
        r
        for r in caplog.records
        if r.levelno >= logging.INFO and getattr(r, "campaign_id", None) == str(campaign_id)
    ]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    [line] = lines
    assert "on-call" in str(getattr(line, "actor", ""))
    assert getattr(line, "reason", None) == "wrong audience"
    assert getattr(line, "from_status", None) == "running"
    assert getattr(line, "to_status", None) == "killed"


async def test_engaging_and_releasing_the_switch_are_logged(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await add_devices(db, 20)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(client, operator, campaign_body())
    killer = bearer(await make_key(Scope.kill, name="on-call"))
    admin = bearer(await make_key(Scope.admin, name="head of ops"))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        engaged = await client.post("/v1/kill-switch", json={"reason": "app down"}, headers=killer)
        released = await client.post(
            "/v1/kill-switch/release", json={"reason": "app back"}, headers=admin
        )
    assert engaged.status_code == 200 and released.status_code == 200
    structured = [
        (r.__dict__["from_status"], r.__dict__["to_status"], r.__dict__["reason"])
        for r in caplog.records
        if r.levelno >= logging.INFO and hasattr(r, "to_status")
    ]
    assert ("released", "engaged", "app down") in structured
    assert ("engaged", "released", "app back") in structured
    paused = [r for r in caplog.records if getattr(r, "campaign_id", None) == str(campaign_id)]
    assert [(r.__dict__["from_status"], r.__dict__["to_status"]) for r in paused] == [
        ("running", "paused")
    ]


async def test_a_tick_that_changes_nothing_logs_nothing_at_info(
    db: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # Two jobs run at a worker's start, the tick and the outbox: the burst takes both (with
    # one it might take the outbox alone), and neither may say anything at INFO when there
    # is nothing to do.
    worker = build_worker(db.settings, burst=True, max_burst_jobs=2)
    with caplog.at_level(logging.DEBUG):
        try:
            await worker.main()
        finally:
            await worker.close()
    # arq's lines for the tick job: its start (→) and its end (←).
    ticks = [r for r in caplog.records if re.search(r"[→←] tick\b", r.getMessage())]
    assert len(ticks) == 2, "the worker ran no tick"
    outbox = [r for r in caplog.records if re.search(r"[→←] outbox\b", r.getMessage())]
    assert len(outbox) == 2, "the worker ran no outbox"
    loud = [r.getMessage() for r in ticks + outbox if r.levelno >= logging.INFO]
    assert loud == []
    # Nor anything else the tick did: after start-up, only the burst's own end is INFO.
    started = next(i for i, r in enumerate(caplog.records) if r.getMessage() == "worker started")
    after = [
        r.getMessage()
        for r in caplog.records[started + 1 :]
        if r.levelno >= logging.INFO and not r.getMessage().startswith("shutdown on")
    ]
    assert after == []


async def test_the_engine_logs_its_own_transitions_in_the_same_form(
    client: httpx.AsyncClient,
    make_key: KeyMaker,
    db: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """start_at reached (scheduled → running), every wave finished (running → completed),
    and an automatic pause (running → paused, at WARNING): one line each, actor "system"."""
    await add_devices(db, 30)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    soon = (utcnow() + timedelta(seconds=1)).isoformat()
    scheduled = await create_and_start(
        client, operator, campaign_body(rollout={"start_at": soon, "waves": [{"percent": 100}]})
    )
    caplog.clear()
    with caplog.at_level(logging.INFO):
        await asyncio.sleep(1.1)
        await run_engine(db, scheduled)
    lines = [
        (r.levelno, r.__dict__["actor"], r.__dict__["from_status"], r.__dict__["to_status"])
        for r in caplog.records
        if getattr(r, "campaign_id", None) == str(scheduled) and hasattr(r, "to_status")
    ]
    assert lines == [
        (logging.INFO, "system", "scheduled", "running"),
        (logging.INFO, "system", "running", "completed"),
    ]

    # A rule tree that no longer parses pauses the campaign at its next step.
    broken = await create_and_start(client, operator, campaign_body())
    async with db.sessionmaker() as session:
        campaign = await session.get(Campaign, broken)
        assert campaign is not None
        campaign.audience_rules = {"field": "no_such_field", "op": "eq", "value": 1}
        session.add(campaign)
        await session.commit()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        await run_engine(db, broken)
    paused = [
        r
        for r in caplog.records
        if getattr(r, "campaign_id", None) == str(broken) and hasattr(r, "to_status")
    ]
    assert [(r.levelno, r.__dict__["from_status"], r.__dict__["to_status"]) for r in paused] == [
        (logging.WARNING, "running", "paused")
    ]
    assert paused[0].__dict__["reason"]
