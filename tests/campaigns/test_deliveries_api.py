from __future__ import annotations

import httpx

from app.auth.models import Scope
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body, create_and_start, run_engine


async def test_deliveries_filter_by_status_and_wave_with_keyset_pages(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    await add_devices(db, 50)
    headers = bearer(
        await make_key(Scope.campaigns_write, Scope.campaigns_read, Scope.campaigns_operate)
    )
    campaign_id = await create_and_start(
        client,
        headers,
        campaign_body(rollout={"waves": [{"percent": 10}, {"percent": 100}]}),
    )
    await run_engine(db, campaign_id)
    url = f"/v1/campaigns/{campaign_id}/deliveries"
    first_wave = (await client.get(url, params={"wave": 0}, headers=headers)).json()
    assert len(first_wave["items"]) == 5
    assert {d["status"] for d in first_wave["items"]} == {"sent"}

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 20, "status": "sent"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(url, params=params, headers=headers)).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 50
    assert seen == sorted(seen)
    none = (await client.get(url, params={"status": "failed"}, headers=headers)).json()
    assert none["items"] == []
    bad = await client.get(url, params={"status": "lost"}, headers=headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "query.status"
