"""The outbox job: every second, send the team channel's messages and the webhooks' deliveries
that are due (`app.notify.dispatch`).

A thin wrapper: its clients (the Slack Web API client, an HTTP client for webhooks) are
built on its first run in a worker and kept in the job context. It runs beside the tick and
the send jobs, never inside them, so a slow or absent Slack holds up no send and no stop.
Safe to run twice at once, on one worker or several: messages are claimed before they are
sent (`app.notify.repository`)."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.notify.dispatch import OutboxDeps, dispatch
from workers.context import WorkerContext

log = logging.getLogger("wavecast.worker")
_KEY = "wavecast_outbox"


def _deps(ctx: dict[str, Any]) -> OutboxDeps:
    deps: OutboxDeps | None = ctx.get(_KEY)
    if deps is None:
        runtime = WorkerContext.of(ctx).runtime
        deps = OutboxDeps.build(runtime.settings, runtime.sessionmaker)
        ctx[_KEY] = deps
    return deps


async def send_outbox(ctx: dict[str, Any]) -> None:
    try:
        report = await dispatch(_deps(ctx))
    except (SQLAlchemyError, RedisError, OSError) as exc:
        # The next second's run tries again; nothing is lost (the rows stay pending).
        log.warning("outbox run failed", extra={"error": str(exc)})
        return
    if report.sent or report.failed or report.retried:
        log.info(
            "outbox sent",
            extra={"sent": report.sent, "retried": report.retried, "failed": report.failed},
        )


async def close_outbox(ctx: dict[str, Any]) -> None:
    deps: OutboxDeps | None = ctx.pop(_KEY, None)
    if deps is not None:
        await deps.aclose()
