"""`wavecast kill-switch` and `wavecast campaigns`: the operator's commands, run as a real
process against the test database and Redis, through the same commands as the API."""

from __future__ import annotations

import asyncio
import getpass
import json
import subprocess
import sys
import uuid

import httpx

from app.audit import repository as audit_repo
from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, campaign_status, create_and_start, worker_env

ACTOR = f"cli:{getpass.getuser()}"


async def wavecast(runtime: Runtime, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", *args],
        env=worker_env(runtime.settings, WAVECAST_LOG_LEVEL="INFO", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _running(client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime) -> uuid.UUID:
    await add_devices(db, 20)
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    return await create_and_start(client, operator, campaign_body(name="November statement"))


async def test_campaigns_list_show_pause_resume_and_kill(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    campaign_id = await _running(client, make_key, db)

    listed = await wavecast(db, "campaigns", "list", "--status", "running")
    assert listed.returncode == 0, listed.stderr
    assert str(campaign_id) in listed.stdout and "November statement" in listed.stdout
    shown = await wavecast(db, "campaigns", "show", str(campaign_id))
    assert json.loads(shown.stdout)["status"] == "running"

    paused = await wavecast(db, "campaigns", "pause", str(campaign_id), "--reason", "typo")
    assert paused.returncode == 0, paused.stderr
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused
    resumed = await wavecast(db, "campaigns", "resume", str(campaign_id))
    assert resumed.returncode == 0, resumed.stderr
    assert await campaign_status(db, campaign_id) is CampaignStatus.running

    no_reason = await wavecast(db, "campaigns", "kill", str(campaign_id))
    assert no_reason.returncode != 0 and "--reason" in no_reason.stderr
    assert "Traceback" not in no_reason.stderr
    killed = await wavecast(db, "campaigns", "kill", str(campaign_id), "--reason", "bad copy")
    assert killed.returncode == 0, killed.stderr
    assert "killed" in killed.stdout
    assert await campaign_status(db, campaign_id) is CampaignStatus.killed
    async with db.sessionmaker() as session:
        events = await audit_repo.list_events(
            session, limit=10, subject_type="campaign", subject_id=str(campaign_id)
        )
    kill = next(e for e in events if e.action == "campaign.kill")
    assert kill.actor == ACTOR and kill.reason == "bad copy"
    assert "running" in killed.stderr and "killed" in killed.stderr  # the structured line

    unknown = await wavecast(db, "campaigns", "kill", str(uuid.uuid4()), "--reason", "x")
    assert unknown.returncode == 1
    assert len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr


async def test_kill_switch_status_engage_and_release(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    campaign_id = await _running(client, make_key, db)
    assert "released" in (await wavecast(db, "kill-switch", "status")).stdout
    missing = await wavecast(db, "kill-switch", "engage")
    assert missing.returncode == 2 and "--reason" in missing.stderr

    engaged = await wavecast(db, "kill-switch", "engage", "--reason", "app is down")
    assert engaged.returncode == 0, engaged.stderr
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused
    status = (await wavecast(db, "kill-switch", "status")).stdout
    assert "ENGAGED" in status and ACTOR in status and "app is down" in status

    # Another reason while engaged: refused, naming the engagement in force.
    again = await wavecast(db, "kill-switch", "engage", "--reason", "something else")
    assert again.returncode == 1
    assert ACTOR in again.stderr and "app is down" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1, again.stderr

    released = await wavecast(db, "kill-switch", "release", "--reason", "app is back")
    assert released.returncode == 0, released.stderr
    assert "released" in (await wavecast(db, "kill-switch", "status")).stdout
    assert await campaign_status(db, campaign_id) is CampaignStatus.paused


async def test_a_stop_it_cannot_confirm_says_so_and_exits_non_zero(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    campaign_id = await _running(client, make_key, db)
    killed = await wavecast(
        db,
        "campaigns",
        "kill",
        str(campaign_id),
        "--reason",
        "incident",
        WAVECAST_REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert killed.returncode == 3, killed.stderr
    assert "NOT CONFIRMED" in killed.stderr and "recorded in the database" in killed.stderr
    assert "Traceback" not in killed.stderr
    assert await campaign_status(db, campaign_id) is CampaignStatus.killed
    engaged = await wavecast(
        db,
        "kill-switch",
        "engage",
        "--reason",
        "incident",
        WAVECAST_REDIS_URL="redis://127.0.0.1:1/0",
    )
    assert engaged.returncode == 3 and "NOT CONFIRMED" in engaged.stderr
    # Asked again once Redis is reachable, the same stop is confirmed.
    confirmed = await wavecast(db, "kill-switch", "engage", "--reason", "incident")
    assert confirmed.returncode == 0, confirmed.stderr
