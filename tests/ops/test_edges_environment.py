"""Every answer names the deployment's environment in `Wavecast-Environment`, errors
included, so an operator sees which deployment answered before acting on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.auth.models import Scope
from app.main import create_app
from app.runtime import Runtime
from app.settings import Environment
from tests.conftest import KeyMaker, bearer


@pytest.fixture
async def staging(db: Runtime) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(db.settings.model_copy(update={"env": Environment.staging}), runtime=db)

    async def boom() -> None:
        raise RuntimeError("an unexpected failure")

    app.add_api_route("/v1/boom", boom)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://wavecast.test") as c:
        yield app, c


async def test_every_answer_names_the_environment(
    staging: tuple[FastAPI, httpx.AsyncClient], make_key: KeyMaker
) -> None:
    _, client = staging
    admin = bearer(await make_key(Scope.admin))
    answers = {
        "ok": await client.get("/healthz"),
        "api": await client.get("/v1/keys", headers=admin),
        "401": await client.get("/v1/keys"),
        "404": await client.get("/v1/nowhere", headers=admin),
        "405": await client.put("/v1/keys", headers=admin),
        "422": await client.post("/v1/keys", json={}, headers=admin),
        "413": await client.post("/v1/keys", content=b"x" * 2_000_000, headers=admin),
        "500": await client.get("/v1/boom", headers=admin),
        "openapi": await client.get("/openapi.json"),
        "form": await client.get("/ui/login"),
    }
    for what, answer in answers.items():
        assert answer.headers.get("wavecast-environment") == "staging", (what, answer.status_code)
    assert answers["500"].status_code == 500
    assert answers["500"].headers["x-content-type-options"] == "nosniff"


async def test_the_default_is_development(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).headers["wavecast-environment"] == "development"
