"""Campaign input at the edges of what the database stores: refused with a 422 naming the
field, never stored rounded and never a 500."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.auth.models import Scope
from app.rollout.planner import MAX_WAVES
from tests.conftest import KeyMaker, bearer
from tests.support import campaign_body


@pytest.mark.parametrize("value", ["1e-1000000", "99.99999", "1e-100", "0.00001"])
async def test_a_threshold_finer_than_stored_is_refused(
    client: httpx.AsyncClient, make_key: KeyMaker, value: str
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write))
    raw = campaign_body(failure_threshold_percent=0)
    answer = await client.post(
        "/v1/campaigns",
        content=httpx.Request("POST", "/", json=raw).content.replace(
            b'"failure_threshold_percent":0', f'"failure_threshold_percent":"{value}"'.encode()
        ),
        headers={**headers, "content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["field"] == "failure_threshold_percent"
    assert "4 decimal places" in error["message"], error


async def test_a_threshold_as_fine_as_stored_reads_back_equal(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))
    created = await client.post(
        "/v1/campaigns", json=campaign_body(failure_threshold_percent="99.9999"), headers=headers
    )
    assert created.status_code == 201, created.text
    read = await client.get(f"/v1/campaigns/{created.json()['id']}", headers=headers)
    assert float(read.json()["failure_threshold_percent"]) == 99.9999


@pytest.mark.parametrize("wave", [MAX_WAVES, 2**31, 10**20])
async def test_a_wave_no_campaign_can_have_is_refused(
    client: httpx.AsyncClient, make_key: KeyMaker, wave: int
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write, Scope.campaigns_read))
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    path = f"/v1/campaigns/{created.json()['id']}/deliveries"
    answer = await client.get(path, params={"wave": wave}, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "query.wave"
    last = await client.get(path, params={"wave": MAX_WAVES - 1}, headers=headers)
    assert last.status_code == 200, last.text


async def test_a_finished_campaign_says_it_cannot_change(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.admin))
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=headers)
    url = f"/v1/campaigns/{created.json()['id']}"
    assert (await client.post(f"{url}/cancel", json={}, headers=headers)).status_code == 200
    answer = await client.patch(url, json={"throttle": {"per_second": 5}}, headers=headers)
    assert answer.status_code == 409, answer.text
    assert answer.json()["detail"] == "a cancelled campaign cannot change any more"


async def test_segments_named_alike_at_once_get_one_201_and_409s(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.campaigns_write))
    answers = await asyncio.gather(
        *(
            client.post(
                "/v1/segments", json={"name": "race", "rules": {"everyone": True}}, headers=headers
            )
            for _ in range(6)
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409, 409, 409], [
        a.text for a in answers
    ]
