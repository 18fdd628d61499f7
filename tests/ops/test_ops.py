from __future__ import annotations

import httpx

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


async def test_readyz_is_503_when_redis_is_unreachable(settings: Settings) -> None:
    broken = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    runtime = await Runtime.start(broken)
    try:
        app = create_app(broken, runtime=runtime)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            answer = await c.get("/readyz")
    finally:
        await runtime.close()
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["checks"]["database"] == "ok"
    assert answer.json()["checks"]["redis"].startswith("unreachable")
    assert "redis" in answer.json()["detail"]


async def test_readyz_is_503_when_the_database_is_unreachable(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none"}
    )
    runtime = await Runtime.start(broken)
    try:
        app = create_app(broken, runtime=runtime)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            answer = await c.get("/readyz")
    finally:
        await runtime.close()
    assert answer.status_code == 503
    assert answer.json()["checks"]["database"].startswith("unreachable")
    assert answer.json()["checks"]["redis"] == "ok"


async def test_openapi_is_served(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/v1/devices" in schema["paths"]
    assert (await client.get("/docs")).status_code == 200
