"""Every problem+json `status` is the answer's HTTP status code (RFC 9457 and the OpenAPI
document's `Problem` schema); a campaign's state travels as `campaign_status`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.auth.models import Scope
from app.errors import Problem
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer
from tests.support import add_devices, campaign_body


def _problem(answer: httpx.Response) -> dict[str, Any]:
    assert answer.headers["content-type"] == "application/problem+json", answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] == answer.status_code, body
    assert isinstance(body["status"], int)
    return body


async def test_every_kind_of_error_carries_its_own_status_code(
    db: Runtime, client: httpx.AsyncClient, make_key: KeyMaker
) -> None:
    await add_devices(db, 3)
    admin = bearer(await make_key(Scope.admin))
    reader = bearer(await make_key(Scope.campaigns_read))
    created = await client.post("/v1/campaigns", json=campaign_body(), headers=admin)
    assert created.status_code == 201, created.text
    campaign = created.json()["id"]

    conflicts = [await client.post(f"/v1/campaigns/{campaign}/pause", headers=admin)]
    started = await client.post(f"/v1/campaigns/{campaign}/start", headers=admin)
    assert started.is_success, started.text
    conflicts.append(await client.post(f"/v1/campaigns/{campaign}/start", headers=admin))
    killed = await client.post(
        f"/v1/campaigns/{campaign}/kill", json={"reason": "wrong audience"}, headers=admin
    )
    assert killed.is_success, killed.text
    conflicts.append(await client.post(f"/v1/campaigns/{campaign}/resume", headers=admin))
    for answer, state in zip(conflicts, ("draft", "running", "killed"), strict=True):
        assert answer.status_code == 409, answer.text
        body = _problem(answer)
        assert body["campaign_status"] == state, "the campaign's state keeps its own name"

    others = [
        (401, await client.get("/v1/campaigns")),
        (403, await client.post("/v1/campaigns", json=campaign_body(), headers=reader)),
        (
            404,
            await client.get(f"/v1/campaigns/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=admin),
        ),
        (404, await client.get("/v1/nowhere", headers=admin)),
        (405, await client.put("/v1/campaigns", headers=admin)),
        (422, await client.post("/v1/campaigns", json={"name": "x"}, headers=admin)),
        (
            400,
            await client.post(
                "/v1/campaigns",
                content=b"{not json",
                headers={**admin, "content-type": "application/json"},
            ),
        ),
        (413, await client.post("/v1/campaigns", content=b"x" * 2_000_000, headers=admin)),
    ]
    for code, answer in others:
        assert answer.status_code == code, (code, answer.text)
        _problem(answer)


@pytest.mark.parametrize("name", ["status", "type", "title", "detail", "instance", "errors"])
def test_a_problem_cannot_redefine_a_standard_member(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Problem(409, "Conflict", extra={name: "draft"})
