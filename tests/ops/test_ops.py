from __future__ import annotations

import httpx
import pytest

from app.main import create_app
from app.runtime import Runtime
from app.settings import Settings


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert 'wavecast_http_requests_total{method="GET",route="/readyz",status="200"}' in metrics.text


@pytest.mark.parametrize(
    ("down", "broken"),
    [
        ("redis", {"redis_url": "redis://127.0.0.1:1/0"}),
        ("database", {"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}),
    ],
)
async def test_readyz_is_503_naming_the_unreachable_store(
    settings: Settings, down: str, broken: dict[str, str]
) -> None:
    runtime = await Runtime.start(settings.model_copy(update=broken))
    try:
        app = create_app(runtime.settings, runtime=runtime)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            answer = await c.get("/readyz")
    finally:
        await runtime.close()
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    up = ({"database", "redis"} - {down}).pop()
    assert answer.json()["checks"][down].startswith("unreachable")
    assert answer.json()["checks"][up] == "ok"
    assert down in answer.json()["detail"]


async def test_openapi_is_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/v1/devices" in schema["paths"]
    assert (await client.get("/docs")).status_code == 200
