"""The opens budget as operators meet it: throttle.max_opens_per_second in the API (set,
validated, edited, removed), the effective rate and its reason in GET /v1/campaigns/{id}
and on the campaign page, and the rate the workers are given."""

from __future__ import annotations

import httpx

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.control.plane import Control, paced, throttle_scope
from app.rollout import engine
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start
from tests.ui.support import sign_in

OPERATOR = (Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)


async def test_a_budget_is_validated_and_shown(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(*OPERATOR))
    for bad in (0, -3, 1_000_001, "many"):
        answer = await client.post(
            "/v1/campaigns",
            json=campaign_body(throttle={"per_second": 2000, "max_opens_per_second": bad}),
            headers=headers,
        )
        assert answer.status_code == 422, answer.text
        assert "max_opens_per_second" in answer.text
    created = await client.post(
        "/v1/campaigns",
        json=campaign_body(throttle={"per_second": 2000, "max_opens_per_second": 300}),
        headers=headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["throttle"] == {
        "per_second": 2000,
        "max_opens_per_second": 300,
        "effective_per_second": None,
        "effective_reason": "no estimate yet: the budget itself, as if every send were "
        "opened at once",
    }
    plain = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    assert plain.json()["throttle"] == {"per_second": 100000}


async def test_editing_the_throttle_keeps_or_removes_the_budget(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(*OPERATOR))
    created = await client.post(
        "/v1/campaigns",
        json=campaign_body(throttle={"per_second": 2000, "max_opens_per_second": 300}),
        headers=headers,
    )
    url = f"/v1/campaigns/{created.json()['id']}"
    kept = await client.patch(url, json={"throttle": {"per_second": 500}}, headers=headers)
    assert kept.status_code == 200, kept.text
    assert kept.json()["throttle"]["max_opens_per_second"] == 300
    assert kept.json()["throttle"]["per_second"] == 500
    changed = await client.patch(
        url, json={"throttle": {"per_second": 500, "max_opens_per_second": 50}}, headers=headers
    )
    assert changed.json()["throttle"]["max_opens_per_second"] == 50
    removed = await client.patch(
        url, json={"throttle": {"per_second": 500, "max_opens_per_second": None}}, headers=headers
    )
    assert removed.json()["throttle"] == {"per_second": 500}


async def test_the_engine_sets_the_rate_the_api_the_page_and_the_workers_see(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 50)
    key = await make_key(*OPERATOR)
    headers = bearer(key)
    body = campaign_body(
        rollout={"waves": [{"percent": 100}]},
        throttle={"per_second": 2000, "max_opens_per_second": 10},
    )
    campaign_id = await create_and_start(client, headers, body)
    control = Control(db.redis)
    try:
        # Before any estimate the workers are given the budget itself.
        assert await control.throttle.get_rate(throttle_scope(campaign_id)) == 10.0
        await engine.tick(db.sessionmaker, control, db.settings)
        async with db.sessionmaker() as session:
            campaign = await session.get(Campaign, campaign_id)
            assert campaign is not None
            rate, reason = campaign.effective_per_second, campaign.effective_reason
        assert rate is not None and reason is not None
        # The prior (open rate 0.5, median 5 s): a budget of 10 opens/s allows far fewer
        # than 2,000 sends a second, but more than 10.
        assert 10 < rate < paced(2000)
        assert reason.startswith("opens budget 10/s: predicted from the deployment's prior")
        assert await control.throttle.get_rate(throttle_scope(campaign_id)) == rate
    finally:
        await control.watch.aclose()
    view = (await client.get(f"/v1/campaigns/{campaign_id}", headers=headers)).json()
    assert view["throttle"]["effective_per_second"] == rate
    assert view["throttle"]["effective_reason"] == reason
    await sign_in(client, key)
    # The live part of the campaign page (the page includes it, and refreshes it).
    page = await client.get(f"/ui/campaigns/{campaign_id}/live")
    assert page.status_code == 200
    assert 'id="opens-budget"' in page.text
    assert f"{round(rate):,} / s" in page.text
    assert "predicted from the deployment&#39;s prior" in page.text
