"""A stop while Redis is unreachable: recorded in the database, answered honestly."""

from __future__ import annotations

import httpx

from app.auth.models import Scope
from app.campaigns.state import CampaignStatus
from app.main import create_app
from app.runtime import Runtime, connect_redis
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body, campaign_status, create_and_start


async def test_kill_without_redis_is_recorded_and_says_it_is_unconfirmed(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    operator = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_operate, Scope.campaigns_read)
    )
    campaign_id = await create_and_start(client, operator, campaign_body())
    broken_settings = db.settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    broken = Runtime(broken_settings, db.engine, db.sessionmaker, connect_redis(broken_settings))
    app = create_app(broken_settings, runtime=broken)
    killer = bearer(await make_key(Scope.kill))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        answer = await c.post(
            f"/v1/campaigns/{campaign_id}/kill", json={"reason": "incident"}, headers=killer
        )
        engaged = await c.post("/v1/kill-switch", json={"reason": "incident"}, headers=killer)
    await broken.redis.aclose()
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "2"
    assert "recorded in the database" in answer.json()["detail"]
    assert await campaign_status(db, campaign_id) is CampaignStatus.killed
    assert engaged.status_code == 503
    # Retrying once Redis is back confirms the kill.
    again = await client.post(
        f"/v1/campaigns/{campaign_id}/kill", json={"reason": "confirm"}, headers=killer
    )
    assert again.status_code == 200
    assert again.json()["in_flight_at_answer"] == 0
