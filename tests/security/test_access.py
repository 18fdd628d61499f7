"""Who may do what.

The route table drives the first test: every route the application serves is public (a
probe or the docs), the form's, or demands exactly one scope, so a new endpoint without a
declared scope fails here. `tests/auth/test_keys.py::test_scope_matrix` then calls every /v1
endpoint with every scope. The rest are object-level checks: a limited key cannot read or
change what its scopes do not cover, by any road.
"""

from __future__ import annotations

import json

import httpx

from app.auth.models import Scope
from app.main import create_app
from app.ops.routes import (
    FORM_PREFIX,
    PUBLIC_PATHS,
    SLACK_PREFIX,
    all_paths,
    api_routes,
    required_scopes,
)
from tests.conftest import KeyMaker, PersonMaker, bearer


def test_every_route_is_public_the_forms_or_scoped() -> None:
    app = create_app()
    scoped = {route.path for route in api_routes(app) if len(required_scopes(route)) == 1}
    unclassified = [
        path
        for path, _ in all_paths(app)
        if path not in PUBLIC_PATHS
        and path not in scoped
        and not (path == FORM_PREFIX or path.startswith(FORM_PREFIX + "/"))
        and not path.startswith(SLACK_PREFIX + "/")
    ]
    assert unclassified == [], f"routes with no declared scope: {unclassified}"
    assert {"/healthz", "/v1/keys"} <= {p for p, _ in all_paths(app)}


def test_no_scoped_route_is_listed_as_public() -> None:
    app = create_app()
    scoped = {route.path for route in api_routes(app) if required_scopes(route)}
    assert scoped & PUBLIC_PATHS == set()


async def test_public_routes_answer_without_a_key(client: httpx.AsyncClient) -> None:
    for path in sorted(PUBLIC_PATHS - {"/docs/oauth2-redirect"}):
        assert (await client.get(path)).status_code == 200, path


async def test_limited_keys_cannot_manage_keys(
    client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker
) -> None:
    admin = bearer(await make_key(Scope.admin))
    person = str(await make_person())
    victim = (
        await client.post(
            "/v1/keys",
            json={"name": "crm", "scopes": ["kill"], "person_id": person},
            headers=admin,
        )
    ).json()
    for scope in set(Scope) - {Scope.admin}:
        limited = bearer(await make_key(scope))
        assert (await client.get("/v1/keys", headers=limited)).status_code == 403
        revoke = await client.request(
            "DELETE", f"/v1/keys/{victim['id']}", json={"reason": "x"}, headers=limited
        )
        assert revoke.status_code == 403
        # Nor mint itself a stronger key.
        escalate = await client.post(
            "/v1/keys",
            json={"name": "me", "scopes": ["admin"], "person_id": person},
            headers=limited,
        )
        assert escalate.status_code == 403
    listing = (await client.get("/v1/keys", headers=admin)).json()
    assert victim["id"] in {k["id"] for k in listing}  # still there, not revoked
    assert all(k["scopes"] != ["admin"] or k["name"] != "me" for k in listing)


async def test_a_device_writer_cannot_make_a_test_device_by_any_road(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    writer = bearer(await make_key(Scope.devices_write))
    admin = bearer(await make_key(Scope.admin))
    created = await client.post(
        "/v1/devices", json={"token": "qa-phone", "platform": "android"}, headers=writer
    )
    device_id = created.json()["id"]

    assert (
        await client.put(f"/v1/devices/{device_id}/test-device", json={}, headers=writer)
    ).status_code == 403
    sneaky_register = await client.post(
        "/v1/devices",
        json={"token": "qa-phone", "platform": "android", "is_test_device": True},
        headers=writer,
    )
    assert sneaky_register.status_code == 422
    assert sneaky_register.json()["errors"][0]["field"] == "is_test_device"
    sneaky_patch = await client.patch(
        f"/v1/devices/{device_id}", json={"is_test_device": True}, headers=writer
    )
    assert sneaky_patch.status_code == 422
    line = {"token": "qa-phone-2", "platform": "android", "is_test_device": True}
    imported = await client.post(
        "/v1/devices/import",
        content=json.dumps(line) + "\n",
        headers={**writer, "content-type": "application/x-ndjson"},
    )
    assert imported.status_code == 200
    assert imported.json()["created"] == 0

    devices = (await client.get("/v1/devices", headers=admin)).json()["items"]
    assert devices and not any(d["is_test_device"] for d in devices)
    # The one road that works: an admin, audited.
    marked = await client.put(
        f"/v1/devices/{device_id}/test-device", json={"reason": "QA"}, headers=admin
    )
    assert marked.status_code == 200 and marked.json()["is_test_device"] is True


async def test_a_kill_key_can_engage_the_switch_but_not_release_it(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    kill = bearer(await make_key(Scope.kill))
    operator = bearer(await make_key(Scope.campaigns_operate))
    admin = bearer(await make_key(Scope.admin))
    engaged = await client.post("/v1/kill-switch", json={"reason": "incident"}, headers=kill)
    assert engaged.status_code == 200 and engaged.json()["engaged"] is True
    for key in (kill, operator):
        refused = await client.post(
            "/v1/kill-switch/release", json={"reason": "all clear"}, headers=key
        )
        assert refused.status_code == 403
    state = (await client.get("/v1/kill-switch", headers=admin)).json()
    assert state["engaged"] is True
    released = await client.post(
        "/v1/kill-switch/release", json={"reason": "all clear"}, headers=admin
    )
    assert released.status_code == 200 and released.json()["engaged"] is False


async def test_a_campaign_reader_cannot_change_or_stop_campaigns(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    reader = bearer(await make_key(Scope.campaigns_read))
    writer = bearer(await make_key(Scope.campaigns_write))
    segment = await client.post(
        "/v1/segments",
        json={"name": "all", "rules": {"everyone": True}},
        headers=writer,
    )
    assert segment.status_code == 201, segment.text
    body = {
        "name": "Statement",
        "kind": "live",
        "content": {"title": "Your statement is ready", "body": "Log in to see it."},
        "audience": {"segment_id": segment.json()["id"]},
        "rollout": {"waves": [{"percent": 1, "hold_seconds": 900}, {"percent": 100}]},
    }
    created = await client.post("/v1/campaigns", json=body, headers=writer)
    assert created.status_code == 201, created.text
    url = f"/v1/campaigns/{created.json()['id']}"
    assert (await client.get(url, headers=reader)).status_code == 200
    assert (await client.patch(url, json={"name": "x"}, headers=reader)).status_code == 403
    for action in ("start", "pause", "cancel", "kill"):
        answer = await client.post(f"{url}/{action}", json={"reason": "x"}, headers=reader)
        assert answer.status_code == 403, action
    # The writer may create and edit, but not operate or kill.
    for action in ("start", "kill"):
        answer = await client.post(f"{url}/{action}", json={"reason": "x"}, headers=writer)
        assert answer.status_code == 403, action
    assert (await client.get(url, headers=reader)).json()["status"] == "draft"
