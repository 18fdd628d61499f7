"""Dependency aliases, in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from arq.connections import ArqRedis
from fastapi import Depends, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth import repository as auth_repo
from app.auth import service as auth_service
from app.auth.key_cache import KeyCache
from app.auth.models import Scope
from app.auth.principal import Principal
from app.db import migrate
from app.db.session import unit_of_work
from app.errors import Problem
from app.ops.ratelimit import charge_failed_auth, charge_key
from app.runtime import Runtime
from app.settings import Settings

# Dependencies are `async def` even when they do not await: FastAPI runs a plain `def` in a
# worker thread, a hop per dependency per request.


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings_dep(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_redis(runtime: RuntimeDep) -> ArqRedis:
    return runtime.redis


RedisDep = Annotated[ArqRedis, Depends(get_redis)]


async def schema_behind(request: Request, runtime: Runtime) -> migrate.SchemaBehind | None:
    """None once the database's schema is at the migrations' head.

    A schema at the head stays there while the process runs, so the positive answer is kept
    (`app.state.schema_at_head`); a negative one is asked again, so `wavecast migrate` is
    noticed at once, without a restart."""
    state = request.app.state
    if getattr(state, "schema_at_head", False):
        return None
    async with runtime.engine.connect() as conn:
        behind = await conn.run_sync(migrate.schema_behind)
    if behind is None:
        state.schema_at_head = True
    return behind


async def require_schema(request: Request, runtime: Runtime) -> None:
    """An unmigrated database answers 503 naming `wavecast migrate`, never a 500."""
    # Known at the head: answered here, without awaiting `schema_behind` (every keyed request
    # asks twice: for its key, then for its connection).
    if getattr(request.app.state, "schema_at_head", False):
        return
    try:
        behind = await schema_behind(request, runtime)
    except (SQLAlchemyError, OSError):
        return  # an unreachable database is reported by the request's own statements
    if behind is not None:
        raise Problem(503, "Service unavailable", str(behind), headers={"Retry-After": "10"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    # The runtime straight from the app, not as a dependency of its own: FastAPI walks every
    # dependency of every request, and the session and the key are on every request.
    runtime: Runtime = request.app.state.runtime
    await require_schema(request, runtime)
    async with unit_of_work(runtime.sessionmaker) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client never sees
# success for a change that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# The two calls made most (the campaign view, the device registration) open their connection
# with these in the endpoint, not through a dependency: FastAPI (0.16x) spends some 20 µs on
# each dependency of each request, as much as their own work. They are used after the key's
# dependency has run, so a refused key never takes a connection.


@asynccontextmanager
async def reading(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection for an answer that only reads, in one statement (PostgreSQL) or in one
    deferred transaction (SQLite, `app.db.session`): no unit of work, nothing to commit, and
    none of a session's bookkeeping."""
    runtime: Runtime = request.app.state.runtime
    await require_schema(request, runtime)
    async with runtime.engine.connect() as connection:
        yield connection


@asynccontextmanager
async def writing(request: Request) -> AsyncIterator[AsyncConnection]:
    """A connection for an answer that is one write statement: its transaction commits (or
    rolls back) when the block ends, before the answer is sent, as a unit of work's does,
    without a session's bookkeeping. One statement needs no lock taken ahead of it, so
    SQLite's deferred BEGIN is enough here (`app.db.session`)."""
    runtime: Runtime = request.app.state.runtime
    await require_schema(request, runtime)
    async with runtime.engine.begin() as connection:
        yield connection


async def get_principal(request: Request) -> Principal:
    runtime: Runtime = request.app.state.runtime
    header = request.headers.get("authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise Problem(
            401,
            "Unauthorized",
            "an API key is required: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="wavecast"'},
        )
    await require_schema(request, runtime)
    key = raw.strip()

    async def load() -> Principal | None:
        async with unit_of_work(runtime.sessionmaker) as session:
            return await auth_service.authenticate(session, runtime.settings, key)

    principal = await key_cache(request, runtime).authenticate(key, load)
    if principal is None:
        await charge_failed_auth(request.scope)
        raise Problem(
            401,
            "Unauthorized",
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="wavecast", error="invalid_token"'},
        )
    if principal.key_id is not None:
        await charge_key(request.scope, principal.key_id, may_stop=principal.has(Scope.kill))
    request.state.principal = principal
    return principal


def key_cache(request: Request, runtime: Runtime) -> KeyCache:
    """The application's cache of proven keys, made on first use."""
    state = request.app.state
    cache: KeyCache | None = getattr(state, "key_cache", None)
    if cache is None:

        async def read_watermark() -> tuple[object, ...]:
            async with runtime.sessionmaker() as session:
                return await auth_repo.watermark(session)

        cache = state.key_cache = KeyCache(
            runtime.settings.key_pepper.get_secret_value(),
            read_watermark,
            revocation_seconds=runtime.settings.key_revocation_seconds,
        )
    return cache


# Marks a dependency that authenticates the request's key itself (`app.ops.openapi` declares
# such routes' `security` from it, as from `get_principal`).
AUTHENTICATES = "authenticates"


def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    # Calls `get_principal` itself instead of depending on it: FastAPI spends 12-20 µs on
    # each dependency of each request, and every keyed request has this one.
    async def dependency(request: Request) -> Principal:
        principal = await get_principal(request)
        if not principal.has(scope):
            raise Problem(403, "Forbidden", f"this API key lacks the '{scope.value}' scope")
        return principal

    dependency.__name__ = f"require_{scope.name}"
    # The scope matrix test reads this to know what each route demands.
    dependency.required_scope = scope  # type: ignore[attr-defined]
    setattr(dependency, AUTHENTICATES, True)
    return dependency


DevicesReader = Annotated[Principal, Depends(require(Scope.devices_read))]
DevicesWriter = Annotated[Principal, Depends(require(Scope.devices_write))]
CampaignsReader = Annotated[Principal, Depends(require(Scope.campaigns_read))]
CampaignsWriter = Annotated[Principal, Depends(require(Scope.campaigns_write))]
CampaignsOperator = Annotated[Principal, Depends(require(Scope.campaigns_operate))]
KillOperator = Annotated[Principal, Depends(require(Scope.kill))]
Admin = Annotated[Principal, Depends(require(Scope.admin))]
EventsWriter = Annotated[Principal, Depends(require(Scope.events_write))]
