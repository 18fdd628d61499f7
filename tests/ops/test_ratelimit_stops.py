"""A stop gets through during an incident: key prefixes are public (the audit log shows them),
so a key is charged only once it authenticates, made-up keys are charged to their address,
and the stops of a key holding `kill` have a bucket no other traffic can drain."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from app.auth import keys
from app.auth.models import Scope
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer

ENGAGE = {"reason": "the app is down"}


@pytest.fixture
async def limited(db: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    # One request per 4 s, burst 1: a slow, loaded machine cannot refill a bucket mid-test.
    settings = db.settings.model_copy(update={"api_rate_limit": 0.25})
    app = create_app(settings, runtime=db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield c


async def test_forged_keys_with_the_victims_prefix_do_not_lock_the_victim_out(
    limited: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    victim = await make_key(Scope.kill, name="on-call")
    prefix = keys.split(victim)
    assert prefix is not None
    flood = []
    for i in range(5):
        forged = bearer(f"wck_{prefix}_garbage{i:040d}")
        flood.append(await limited.post("/v1/kill-switch", json=ENGAGE, headers=forged))

    engaged = await limited.post("/v1/kill-switch", json=ENGAGE, headers=bearer(victim))
    assert engaged.status_code == 200, engaged.text
    assert engaged.json()["engaged"] is True
    # The garbage never authenticated; it was charged to the address it came from.
    assert [a.status_code for a in flood] == [401, 429, 429, 429, 429]
    assert "client address" in flood[1].json()["detail"]


async def test_a_kill_keys_stops_have_capacity_ordinary_traffic_cannot_drain(
    limited: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    on_call = bearer(await make_key(Scope.kill, Scope.campaigns_read, name="on-call"))
    # The key's ordinary bucket is used up by its own reads...
    reads = [(await limited.get("/v1/kill-switch", headers=on_call)).status_code for _ in range(3)]
    assert reads == [200, 429, 429]
    # ...and its stops still get through: each stop endpoint, one after another.
    missing = uuid.uuid4()
    stop = await limited.post(f"/v1/campaigns/{missing}/kill", json=ENGAGE, headers=on_call)
    assert stop.status_code == 404, stop.text  # reached the endpoint, not refused at the door
    # The stop bucket is a limit too, not a way around one.
    again = await limited.post(f"/v1/campaigns/{missing}/cancel", json=ENGAGE, headers=on_call)
    assert again.status_code == 429
    assert "API key" in again.json()["detail"]


async def test_without_the_kill_scope_a_stop_is_ordinary_traffic(
    limited: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    operator = bearer(await make_key(Scope.campaigns_operate, Scope.campaigns_read))
    assert (await limited.get("/v1/campaigns", headers=operator)).status_code == 200
    paused = await limited.post(f"/v1/campaigns/{uuid.uuid4()}/pause", headers=operator)
    assert paused.status_code == 429


async def test_keyed_requests_that_never_authenticate_are_charged_to_the_address(
    limited: httpx.AsyncClient,
) -> None:
    forged = bearer(f"wck_{'a' * 12}_{'x' * 43}")
    assert (await limited.get("/v1/no-such-thing", headers=forged)).status_code == 404
    # The address paid for it: the next anonymous request is over the address's limit.
    assert (await limited.get("/openapi.json")).status_code == 429
