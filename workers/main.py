"""The arq worker: its jobs, its cron ticks, and how it starts and stops.

Clients (database engine, Redis, push providers) are built once at start-up and handed to
jobs through `WorkerContext`; job bodies are thin wrappers around testable functions.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

from arq import cron
from arq.typing import WorkerCoroutine
from arq.worker import Function, Worker

from app.runtime import Runtime, redis_settings
from app.settings import Settings
from workers.context import WorkerContext

QUEUE = "wavecast:queue"
HEARTBEAT_TTL = 30


async def heartbeat(ctx: dict[str, Any]) -> None:
    """Announce this worker as alive; `/readyz` and operators read the set of live workers."""
    wc = WorkerContext.of(ctx)
    await wc.runtime.redis.set(f"wavecast:worker:{wc.worker_id}", "alive", ex=HEARTBEAT_TTL)


def _functions() -> list[Function | WorkerCoroutine]:
    return []


def build_worker(
    settings: Settings, *, burst: bool = False, handle_signals: bool = False, **overrides: Any
) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        runtime = await Runtime.start(settings)
        worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        ctx["wavecast"] = WorkerContext(runtime=runtime, worker_id=worker_id)

    async def shutdown(ctx: dict[str, Any]) -> None:
        wc: WorkerContext | None = ctx.get("wavecast")
        if wc is not None:
            await wc.runtime.close()

    return Worker(
        functions=_functions(),
        cron_jobs=[
            cron(
                heartbeat,
                name="heartbeat",
                second=set(range(0, 60, 10)),
                run_at_startup=True,
                keep_result=0,
            )
        ],
        redis_settings=redis_settings(settings),
        queue_name=QUEUE,
        on_startup=startup,
        on_shutdown=shutdown,
        burst=burst,
        handle_signals=handle_signals,
        **overrides,
    )


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    worker = build_worker(settings, burst=burst, handle_signals=True)
    asyncio.run(worker.main())
