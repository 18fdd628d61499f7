"""Bad input always gets a problem+json answer that names the problem."""

from __future__ import annotations

import httpx
import pytest

from app.auth.models import Scope
from tests.conftest import KeyMaker, bearer


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"token": "t", "platform": "windows"}, "platform"),
        ({"platform": "android"}, "token"),
        ({"token": "t", "platform": "android", "colour": "red"}, "colour"),
        ({"token": "has space", "platform": "android"}, "token"),
        ({"token": "t", "platform": "android", "locale": "polish!"}, "locale"),
        ({"token": "t", "platform": "android", "app_version": "latest"}, "app_version"),
        ({"token": "t", "platform": "android", "tags": ["x"] * 65}, "tags"),
        ({"token": "t", "platform": "android", "attributes": {"a": {"nested": 1}}}, "attributes"),
        ({"token": "", "platform": "android"}, "token"),
    ],
)
async def test_invalid_registration_names_the_field(
    client: httpx.AsyncClient, make_key: KeyMaker, body: dict[str, object], field: str
) -> None:
    headers = bearer(await make_key(Scope.devices_write))
    answer = await client.post("/v1/devices", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 422
    assert problem["errors"][0]["field"] == field
    assert field in problem["detail"]


async def test_malformed_json(client: httpx.AsyncClient, make_key: KeyMaker) -> None:
    headers = bearer(await make_key(Scope.devices_write))
    answer = await client.post(
        "/v1/devices",
        content=b'{"token": "t", "platform": ',
        headers={**headers, "content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert "not valid JSON" in answer.json()["detail"]


async def test_ten_megabyte_body_is_refused(client: httpx.AsyncClient, make_key: KeyMaker) -> None:
    headers = bearer(await make_key(Scope.devices_write))
    huge = b'{"token": "' + b"x" * (10 * 1024 * 1024) + b'", "platform": "android"}'
    answer = await client.post(
        "/v1/devices", content=huge, headers={**headers, "content-type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["field"] == "body"

    async def stream():  # type: ignore[no-untyped-def]
        # No Content-Length: the cap is enforced while reading.
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    chunked = await client.post(
        "/v1/devices", content=stream(), headers={**headers, "content-type": "application/json"}
    )
    assert chunked.status_code == 413


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await client.put("/healthz")
    assert wrong.status_code == 405
    assert wrong.headers["content-type"] == "application/problem+json"
