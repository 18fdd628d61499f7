from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.deps import RuntimeDep, schema_behind

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class _NotMigrated(Exception):
    pass


@router.get(
    "/readyz",
    responses={
        503: {
            "description": "A store is unreachable, or the database is not migrated; "
            "`checks` says which",
            "content": {"application/problem+json": {"schema": {"type": "object"}}},
        }
    },
)
async def readyz(request: Request, runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, str] = {}

    async def database() -> None:
        async with runtime.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        behind = await schema_behind(request, runtime)
        if behind is not None:
            raise _NotMigrated(str(behind))

    async def redis() -> None:
        await runtime.redis.ping()

    for name, probe in (("database", database), ("redis", redis)):
        try:
            await asyncio.wait_for(probe(), timeout=2)
            checks[name] = "ok"
        except _NotMigrated as exc:
            checks[name] = f"not migrated: {exc}"
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            checks[name] = f"unreachable: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if ready:
        return JSONResponse(body)
    return JSONResponse(
        {
            "type": "about:blank",
            "title": "Service unavailable",
            "status": 503,
            "detail": "; ".join(f"{k} {v}" for k, v in checks.items() if v != "ok"),
            **body,
        },
        status_code=503,
        media_type="application/problem+json",
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"description": "Prometheus text exposition format"}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
