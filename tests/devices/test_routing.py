"""Routers turn away paths outside their routes' heads at once (`app.serving.PrefixRouter`);
every request still reaches the route it reached before, behind a root path too, and a path
no route serves is still 404, a method no route at the path takes still 405."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from starlette.routing import Match

from app.auth.models import Scope
from app.main import create_app
from app.runtime import Runtime
from app.serving import PrefixRouter
from tests.conftest import KeyMaker, bearer

REGISTRATION = {"token": "routing-test-token", "platform": "android"}


def _router(app: FastAPI, prefix: str) -> PrefixRouter:
    for route in app.router.routes:
        router = getattr(route, "original_router", None)
        if isinstance(router, PrefixRouter) and router.prefix == prefix:
            return router
    raise AssertionError(f"no guarded router {prefix}")


async def test_routes_are_reached_and_other_paths_turned_away(
    client: httpx.AsyncClient, make_key: KeyMaker, db: Runtime
) -> None:
    headers = bearer(await make_key(Scope.devices_write, Scope.campaigns_read))
    created = await client.post("/v1/devices", json=REGISTRATION, headers=headers)
    assert created.status_code == 201, created.text
    # Routes of routers wrapped in a guard (keys, ops) and of later ones (kill switch).
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/v1/kill-switch", headers=headers)).status_code in (200, 403)
    assert (await client.get("/v1/keys", headers=headers)).status_code == 403
    missing = await client.get("/v1/devicez", headers=headers)
    assert missing.status_code == 404
    wrong_method = await client.put("/v1/devices", json=REGISTRATION, headers=headers)
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["allow"]

    devices = _router(client._transport.app, "/v1/devices")  # type: ignore[attr-defined]
    scope = {"type": "http", "method": "POST", "path": "/v1/campaigns", "root_path": ""}
    assert devices.matches(scope) == (Match.NONE, {})


async def test_a_root_path_in_front_of_the_api_still_reaches_the_routes(
    db: Runtime, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.devices_write))
    app = create_app(db.settings, runtime=db)
    transport = httpx.ASGITransport(app=app, root_path="/wavecast")
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        created = await c.post("/wavecast/v1/devices", json=REGISTRATION, headers=headers)
        assert created.status_code == 201, created.text
        assert (await c.post("/wavecast/v1/devicez", json={}, headers=headers)).status_code == 404
