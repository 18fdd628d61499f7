"""The last active admin key cannot be revoked: without one, no key could be created or
revoked again, nor the kill switch released, short of editing the database."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx

from app.auth.models import Scope
from app.runtime import Runtime
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.support import worker_env


async def _key_id(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> str:
    listing = (await client.get("/v1/keys", headers=headers)).json()
    return str(next(k["id"] for k in listing if k["name"] == name))


async def test_the_last_admin_key_cannot_revoke_itself(
    client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker
) -> None:
    first = bearer(await make_key(Scope.admin, name="first admin"))
    first_id = await _key_id(client, first, "first admin")

    refused = await client.request(
        "DELETE", f"/v1/keys/{first_id}", json={"reason": "leaving"}, headers=first
    )
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 409
    assert "last active admin key" in refused.json()["detail"]
    assert (await client.get("/v1/keys", headers=first)).status_code == 200, "still works"

    # A key without the admin scope does not count as a remaining admin.
    await make_key(Scope.kill, Scope.campaigns_operate, name="on-call")
    again = await client.request("DELETE", f"/v1/keys/{first_id}", headers=first)
    assert again.status_code == 409

    created = await client.post(
        "/v1/keys",
        json={"name": "second admin", "scopes": ["admin"], "person_id": str(await make_person())},
        headers=first,
    )
    assert created.status_code == 201, created.text
    second = bearer(created.json()["key"])

    handed_over = await client.request("DELETE", f"/v1/keys/{first_id}", headers=first)
    assert handed_over.status_code == 200, handed_over.text
    assert (await client.get("/v1/keys", headers=first)).status_code == 401

    # The revoked first key no longer counts: the second is now the last one.
    alone = await client.request("DELETE", f"/v1/keys/{created.json()['id']}", headers=second)
    assert alone.status_code == 409, alone.text
    assert (await client.get("/v1/keys", headers=second)).status_code == 200


async def test_another_admin_cannot_revoke_the_last_other_admin_either(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    a = bearer(await make_key(Scope.admin, name="a"))
    b = bearer(await make_key(Scope.admin, name="b"))
    a_id = await _key_id(client, a, "a")
    b_id = await _key_id(client, a, "b")
    assert (await client.request("DELETE", f"/v1/keys/{a_id}", headers=b)).status_code == 200
    # Revoking an already revoked key still answers as before, without a second record.
    assert (await client.request("DELETE", f"/v1/keys/{a_id}", headers=b)).status_code == 200
    assert (await client.request("DELETE", f"/v1/keys/{b_id}", headers=b)).status_code == 409


async def test_the_cli_refuses_to_revoke_the_last_admin_key(
    db: Runtime, make_key: KeyMaker, client: httpx.AsyncClient
) -> None:
    admin = bearer(await make_key(Scope.admin, name="only admin"))
    admin_id = await _key_id(client, admin, "only admin")
    env = worker_env(db.settings)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "keys", "revoke", admin_id, "--reason", "cleanup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "last active admin key" in result.stderr
    assert (await client.get("/v1/keys", headers=admin)).status_code == 200, "still active"
