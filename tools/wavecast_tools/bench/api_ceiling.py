"""The API benchmark's ceiling: a minimal FastAPI + asyncpg application that does the SQL
Wavecast does for `POST /v1/devices` and `GET /v1/campaigns/{id}`, and nothing else.

Served by uvicorn exactly as `wavecast api` is (one process, uvloop, httptools, no access
log), on the same database, so `Wavecast / ceiling` measured side by side says how much of
the framework's reach Wavecast's own layers leave.

Per request, like Wavecast with an empty key cache: the key is found by its prefix and its
SHA-256 compared (`app.auth.keys`), and the scope checked. Then
- `POST /v1/devices`: the body read by `DeviceRegistration` (Wavecast's own model, so the
  same validation), the row Wavecast proposes (`registration_row`: id, bucket, version key),
  one `INSERT ... ON CONFLICT (token) DO UPDATE ... RETURNING` with Wavecast's columns, the
  row answered as JSON, 201 or 200;
- `GET /v1/campaigns/{id}`: Wavecast's own one statement (`app.campaigns.repository.VIEW_SQL`:
  the campaign row, its waves, the ledger's counts per wave and status or a pruned
  campaign's kept summary, the engagement counts per wave and type, and the current wave's
  newest check results when a wave is out), answered as JSON.

No middleware, no dependency injection beyond the body, no ORM, no rate limit, no audit:
what is left is the framework, the driver and PostgreSQL.

Run: `python -m wavecast_tools.bench.api_ceiling --port N` with WAVECAST_DATABASE_URL and
WAVECAST_KEY_PEPPER set as for `wavecast api`.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from app.auth import keys
from app.campaigns.repository import VIEW_COLUMNS, VIEW_SQL
from app.devices.schemas import DeviceRegistration
from app.devices.service import registration_row
from app.heap import settle_heap
from app.settings import get_settings

_DEVICE_COLUMNS = (
    "id",
    "token",
    "platform",
    "user_id",
    "locale",
    "timezone",
    "app_version",
    "app_version_key",
    "tags",
    "attributes",
    "apns_environment",
    "is_test_device",
    "status",
    "bucket",
    "last_seen_at",
    "created_at",
    "updated_at",
)
_UPDATED = (
    "platform",
    "user_id",
    "locale",
    "timezone",
    "app_version",
    "app_version_key",
    "tags",
    "attributes",
    "apns_environment",
)
_JSON_COLUMNS = {"tags", "attributes"}
_OUT = tuple(c for c in _DEVICE_COLUMNS if c != "app_version_key")
UPSERT = f"""
    INSERT INTO device ({", ".join(_DEVICE_COLUMNS)})
    VALUES ({", ".join(f"${i}" for i in range(1, len(_DEVICE_COLUMNS) + 1))})
    ON CONFLICT (token) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED)},
        last_seen_at = EXCLUDED.last_seen_at,
        updated_at = EXCLUDED.updated_at,
        status = 'active'
    RETURNING {", ".join(_OUT)}, (xmax = 0) AS created
"""
KEY = "SELECT id, key_hash, revoked_at, scopes FROM api_key WHERE prefix = $1"


def _problem(status: int, detail: str) -> Response:
    body = orjson.dumps({"type": "about:blank", "status": status, "detail": detail})
    return Response(body, status, media_type="application/problem+json")


def create_app(database_url: str, pepper: str) -> FastAPI:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def init(connection: asyncpg.Connection) -> None:
            for name in ("json", "jsonb"):
                await connection.set_type_codec(
                    name,
                    encoder=lambda v: orjson.dumps(v).decode(),
                    decoder=orjson.loads,
                    schema="pg_catalog",
                )

        # Up to 20 connections, opened as needed and kept: as Wavecast's pool.
        app.state.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=20, init=init)
        settle_heap()  # as a Wavecast API process does once started
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def authorised(request: Request, connection: Any, scope: str) -> bool:
        scheme, _, raw = request.headers.get("authorization", "").partition(" ")
        prefix = keys.split(raw.strip()) if scheme.lower() == "bearer" else None
        if prefix is None:
            return False
        key = await connection.fetchrow(KEY, prefix)
        return (
            key is not None
            and key["revoked_at"] is None
            and keys.matches(raw.strip(), key["key_hash"], pepper)
            and (scope in key["scopes"] or "admin" in key["scopes"])
        )

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b"ok")

    @app.post("/v1/devices")
    async def register(body: DeviceRegistration, request: Request) -> Response:
        row = registration_row(body)
        async with app.state.pool.acquire() as connection:
            if not await authorised(request, connection, "devices:write"):
                return _problem(401, "the API key is unknown or revoked")
            async with connection.transaction():
                stored = await connection.fetchrow(UPSERT, *(row[c] for c in _DEVICE_COLUMNS))
        out = dict(stored)
        created = out.pop("created")
        return Response(
            orjson.dumps(out, default=str), 201 if created else 200, media_type="application/json"
        )

    @app.get("/v1/campaigns/{campaign_id}")
    async def campaign(campaign_id: uuid.UUID, request: Request) -> Response:
        async with app.state.pool.acquire() as connection:
            if not await authorised(request, connection, "campaigns:read"):
                return _problem(401, "the API key is unknown or revoked")
            # One statement: one snapshot, no transaction needed (as in Wavecast).
            found = await connection.fetchrow(VIEW_SQL, campaign_id)
        if found is None:
            return _problem(404, "no such campaign")
        width = len(VIEW_COLUMNS)
        out: dict[str, Any] = dict(zip(VIEW_COLUMNS, found[:width], strict=True))
        waves, pruned, ledger, events, checks = found[width:]
        out["waves"] = [list(w) for w in waves]
        out["pruned"] = [list(p) for p in pruned]
        out["counts"] = [list(c) for c in ledger or ()]
        out["engagement"] = [list(e) for e in events or ()]
        out["check_results"] = [list(c) for c in checks or ()]
        return Response(orjson.dumps(out, default=str), media_type="application/json")

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m wavecast_tools.bench.api_ceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = get_settings()
    app = create_app(settings.effective_database_url, settings.key_pepper.get_secret_value())
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
