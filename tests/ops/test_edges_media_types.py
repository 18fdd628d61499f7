"""A body in a media type the endpoint does not take is refused with 415, naming the type
received and the ones accepted; OPTIONS and 405 answers list every method a path serves."""

from __future__ import annotations

import json

import httpx
import pytest

from app.auth.models import Scope
from tests.conftest import KeyMaker, PersonMaker, bearer
from tests.ui.support import sign_in

KEY = json.dumps({"name": "crm", "scopes": ["campaigns:read"]}).encode()
DEVICE = json.dumps({"token": "t-1", "platform": "android"}).encode()


@pytest.mark.parametrize(
    ("path", "sent", "accepted"),
    [
        ("/v1/keys", "text/plain", "application/json"),
        ("/v1/keys", "application/x-www-form-urlencoded", "application/json"),
        ("/v1/keys", None, "application/json"),
        ("/v1/devices/import", "application/json", "application/x-ndjson"),
        ("/v1/devices/import", "text/plain; charset=utf-8", "application/x-ndjson"),
    ],
)
async def test_a_body_of_the_wrong_type_is_415(
    client: httpx.AsyncClient, make_key: KeyMaker, path: str, sent: str | None, accepted: str
) -> None:
    headers = bearer(await make_key(Scope.admin))
    if sent is not None:
        headers["content-type"] = sent
    answer = await client.post(path, content=KEY if path == "/v1/keys" else DEVICE, headers=headers)
    assert answer.status_code == 415, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["accept-post"] == accepted
    problem = answer.json()
    assert problem["status"] == 415
    assert problem["accepted"] == [accepted]
    assert problem["received"] == (sent.split(";")[0] if sent else None)
    assert accepted in problem["detail"]
    assert (sent.split(";")[0] if sent else "without a Content-Type") in problem["detail"]
    assert problem["errors"][0]["field"] == "body"


async def test_the_types_each_endpoint_takes_still_pass(
    client: httpx.AsyncClient, make_key: KeyMaker, make_person: PersonMaker
) -> None:
    admin = await make_key(Scope.admin)
    headers = bearer(admin)
    person = str(await make_person("crm", kind="service"))
    key = json.dumps({"name": "crm", "scopes": ["campaigns:read"], "person_id": person})
    for sent in ("application/json", "application/json; charset=utf-8"):
        created = await client.post(
            "/v1/keys", content=key.encode(), headers={**headers, "content-type": sent}
        )
        assert created.status_code == 201, created.text
    imported = await client.post(
        "/v1/devices/import",
        content=DEVICE + b"\n",
        headers={**headers, "content-type": "application/x-ndjson"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["created"] == 1
    # A body-less POST to an endpoint whose body is optional is not a media-type question.
    key_id = created.json()["id"]
    assert (
        await client.request("DELETE", f"/v1/keys/{key_id}", headers=headers)
    ).status_code == 200
    # The form keeps its form posts.
    await sign_in(client, admin)


async def test_options_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    for path, methods in (
        ("/v1/keys", "GET, OPTIONS, POST"),
        ("/v1/campaigns/0b0e6a38-1111-4a4a-9c9c-000000000000/kill", "OPTIONS, POST"),
        ("/healthz", "GET, OPTIONS"),
    ):
        answer = await client.options(path)
        assert answer.status_code == 204, (path, answer.status_code)
        assert answer.headers["allow"] == methods
        assert answer.headers["wavecast-environment"] == "development"
    assert (await client.options("/v1/nowhere")).status_code == 404


async def test_405_lists_every_method_of_the_path(
    client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    headers = bearer(await make_key(Scope.admin))
    answer = await client.put("/v1/keys", headers=headers)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, OPTIONS, POST"
    assert answer.json()["status"] == 405
