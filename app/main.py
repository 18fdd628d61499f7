"""The FastAPI application."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from app import errors
from app.approval.router import router as approval_router
from app.audiences.router import router as audiences_router
from app.audit.router import router as audit_router
from app.auth.key_cache import listen_for_changes
from app.auth.router import router as keys_router
from app.campaigns.router import router as campaigns_router
from app.devices.router import router as devices_router
from app.events.router import router as events_router
from app.guard.policy_log import record_if_changed as record_policy
from app.guard.router import router as policy_router
from app.heap import settle_heap
from app.killswitch.router import router as killswitch_router
from app.logging import configure as configure_logging
from app.ops import openapi
from app.ops.edge import Edge
from app.ops.nul_guard import refuse_unstorable_text
from app.ops.ratelimit import Limiter
from app.ops.router import router as ops_router
from app.ops.security_headers import headers_for
from app.people.router import router as people_router
from app.runtime import Runtime
from app.serving import PrefixRouter
from app.settings import Settings, get_settings
from app.slack.router import router as slack_router
from app.ui import install as install_ui
from app.webhooks.router import router as webhooks_router


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. Pass `runtime` to share stores already opened (tests, `wavecast run`)."""
    settings = settings or (runtime.settings if runtime else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = runtime is None
        app.state.runtime = runtime or await Runtime.start(settings)
        if own:
            await record_policy(app.state.runtime.sessionmaker, settings, process="api")
        app.state.rate_limiter = Limiter(app.state.runtime.redis, settings.api_rate_limit)
        if own:  # the process is this API's (not a test's, nor `wavecast run`'s shared one)
            settle_heap()
        # Revocations made through any API process reach this one's key cache at once.
        key_changes = asyncio.create_task(listen_for_changes(app.state.runtime.redis))
        try:
            yield
        finally:
            key_changes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await key_changes
            if own:
                await app.state.runtime.close()

    app = FastAPI(
        title="Wavecast",
        version="0.1.0",
        summary="Staged, throttled, guarded and stoppable push-notification campaigns.",
        lifespan=lifespan,
        dependencies=[Depends(refuse_unstorable_text)],
        # Wavecast's metrics are its own (Prometheus, `/metrics`) and it configures no
        # OpenTelemetry provider; FastAPI's native telemetry would still ask, on every
        # request, whether one had been configured since (~2% of a request's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served by `openapi.install` from Wavecast's own files instead of FastAPI's CDN.
        docs_url=None,
        redoc_url=None,
    )
    if runtime is not None:
        app.state.runtime = runtime
        app.state.rate_limiter = Limiter(runtime.redis, settings.api_rate_limit)
    environment = settings.env.value
    errors.install(app, answer_headers=lambda path: headers_for(path, environment))

    def body_limit(path: str) -> int:
        if path == "/v1/devices/import":
            return settings.max_import_bytes
        return settings.max_body_bytes

    # One middleware for security headers, metrics, the rate limit, the body's caps and the
    # media types and methods each route takes (`app.ops.edge`).
    app.add_middleware(
        Edge,
        environment=environment,
        limit_for=body_limit,
        timeout=settings.body_timeout_seconds,
        min_rate=settings.body_min_bytes_per_second,
    )
    # In the order of the API's description (`/docs`). FastAPI tries them in this order too,
    # each guarded by its routes' heads (`PrefixRouter`), so a request no longer pays ~7 µs
    # for every route declared before its own.
    for router in (
        ops_router,
        keys_router,
        audit_router,
        devices_router,
        audiences_router,
        campaigns_router,
        events_router,
        killswitch_router,
        policy_router,
        people_router,
        approval_router,
    ):
        app.include_router(
            router if isinstance(router, PrefixRouter) else PrefixRouter.around(router)
        )
    # The document's pages after the API's routes (they are not in it): no API call waits
    # behind them.
    openapi.install(app)
    install_ui(app)
    # The team channel: webhooks for marketing tools, Slack's commands and buttons.
    app.include_router(webhooks_router)
    app.include_router(slack_router)
    return app


def app_factory() -> FastAPI:
    settings = get_settings()
    configure_logging(settings.log_level, json_logs=settings.json_logs)
    return create_app(settings)
