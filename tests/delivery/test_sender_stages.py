"""The sender's stage timers: every batch's time is accounted to the stages it went through."""

from __future__ import annotations

import time

import httpx

from app.auth.models import Scope
from app.delivery.sender import STAGES, PumpReport
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, run_engine


def test_timing_accumulates_per_stage_even_when_the_stage_raises() -> None:
    report = PumpReport()
    with report.timing("claim"):
        time.sleep(0.01)
    try:
        with report.timing("claim"):
            time.sleep(0.01)
            raise RuntimeError("stage failed")
    except RuntimeError:
        pass
    report.add("record", 0.25)
    assert report.seconds["claim"] >= 0.02
    assert report.seconds["record"] == 0.25
    assert set(report.seconds) == {"claim", "record"}


async def test_a_campaign_run_accounts_every_stage(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 120)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(
        client, headers, campaign_body(rollout={"waves": [{"percent": 100}]})
    )
    reports = await run_engine(db, campaign_id)
    sending = [r for r in reports if r.sent]
    assert sum(r.sent for r in sending) == 120
    for report in sending:
        assert set(report.seconds) == set(STAGES)
        assert all(seconds > 0 for seconds in report.seconds.values())
