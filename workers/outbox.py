"""The outbox job: every second, send the team channel's messages and the webhooks' deliveries
that are due (`app.notify.dispatch`).

A thin wrapper: its clients (the Slack Web API client, an HTTP client for webhooks) are
built once, when the worker starts (`open_outbox`), and closed when it stops. arq hands each
job a copy of the worker's context, so a client a job put there would be built again on
every run, once a second, and never closed. It runs beside the tick and
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


def open_outbox(ctx: dict[str, Any]) -> None:
    """Build the outbox's clients into the worker's own context (its start-up's)."""
    runtime = WorkerContext.of(ctx).runtime
    ctx[_KEY] = OutboxDeps.build(runtime.settings, runtime.sessionmaker)


def _deps(ctx: dict[str, Any]) -> OutboxDeps:
    deps: OutboxDeps = ctx[_KEY]
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
