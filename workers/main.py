"""The arq worker process: how it starts, serves its jobs and stops.

Clients (database engine, Redis, push providers) are built once at start-up and handed to
jobs (`workers.jobs`) through `WorkerContext`; how workers share the work is in
`workers.coordination`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from typing import Any

from arq import cron
from arq.worker import Worker, func
from redis.exceptions import RedisError

from app.control.plane import Control, provider_scope
from app.delivery.sender import SenderDeps, provider_cap
from app.guard.policy_log import record_if_changed as record_policy
from app.heap import settle_heap
from app.runtime import Runtime, connect_redis
from app.settings import Settings
from workers.context import WorkerContext
from workers.coordination import (
    HEARTBEAT_TTL,
    PUMPS_PER_CAMPAIGN,
    QUEUE,
    beat,
    heartbeat_key,
)
from workers.jobs import SEND_MAX_TRIES, pump_timeout, send_campaign, tick
from workers.metrics import MetricsServer, start_metrics_server
from workers.outbox import close_outbox, open_outbox, send_outbox
from workers.providers import build_providers
from workers.retention import (
    PARTITIONS_MINUTE,
    PRUNE_MINUTE,
    PRUNE_TIMEOUT_SECONDS,
    make_partitions_ahead,
    partitions_ahead,
    prune_ledger,
)

# A worker that lost Redis tries again after this long, doubling up to the maximum.
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0
log = logging.getLogger("wavecast.worker")
# How often an idle worker asks the queue for a job. Every ask is a Redis round trip on a
# process that is also sending; a job waits at most this long for a worker that is free.
# Stops do not go through the queue (the send gate and the kill switch are read by the send
# jobs themselves), so this sets only how soon a newly asked-for send job starts.
POLL_SECONDS = 0.2


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    handle_signals: bool = False,
    metrics: MetricsServer | None = None,
    **overrides: Any,
) -> Worker:
    async def startup(ctx: dict[str, Any]) -> None:
        runtime = await Runtime.start(settings)
        await record_policy(runtime.sessionmaker, settings, process="worker")
        # The ledger's partitions for this month and the next (PostgreSQL), before any
        # release; then hourly (ledger_partitions_ahead).
        await make_partitions_ahead(runtime)
        if metrics is not None:
            metrics.attach(runtime.sessionmaker)
        worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        control = Control(runtime.redis)
        providers = await build_providers(settings, runtime, worker_id)
        # Blocks any worker writes reach this process's requests already under way; the feed
        # stops with the providers, also when Redis is gone and arq's shutdown cannot run.
        providers.listen(runtime.redis, control.throttle)
        for name in ("fcm", "apns"):
            await control.throttle.set_rate(provider_scope(name), provider_cap(settings, name))
        ctx["wavecast"] = WorkerContext(
            runtime=runtime,
            worker_id=worker_id,
            control=control,
            providers=providers,
            sender=SenderDeps(
                settings=settings,
                sessionmaker=runtime.sessionmaker,
                control=control,
                providers=providers.route,
                worker_id=worker_id,
            ),
        )
        open_outbox(ctx)
        await runtime.redis.set(heartbeat_key(worker_id), "alive", ex=HEARTBEAT_TTL)
        ctx["wavecast_heartbeat"] = asyncio.create_task(beat(runtime.redis, worker_id))
        log.info("worker started", extra={"worker": worker_id, "provider": settings.provider.value})
        # What start-up built (modules, metadata, clients) lives as long as the process: out
        # of the collector's sight, a full collection no longer walks it, and a send is not
        # held up for tens of milliseconds while one runs (the throttle's windows saw that);
        # and the send path's garbage, freed by reference counting, is scanned less often.
        settle_heap()

    async def shutdown(ctx: dict[str, Any]) -> None:
        if metrics is not None:
            metrics.attach(None)
        beat: asyncio.Task[None] | None = ctx.get("wavecast_heartbeat")
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        await close_outbox(ctx)
        wc: WorkerContext | None = ctx.get("wavecast")
        if wc is not None:
            # Leave the fair-share count at once: the other workers take over this share.
            with contextlib.suppress(RedisError):
                await wc.runtime.redis.delete(heartbeat_key(wc.worker_id))
            await wc.control.watch.aclose()
            await wc.providers.aclose()
            await wc.runtime.close()

    every_second = set(range(60))
    return Worker(
        functions=[
            func(
                send_campaign,
                name="send_campaign",
                keep_result=0,
                max_tries=SEND_MAX_TRIES,
                timeout=pump_timeout(settings),
            )
        ],
        cron_jobs=[
            # The team channel and webhooks (app.notify): beside the tick, never inside it.
            cron(
                send_outbox,
                name="outbox",
                second=every_second,
                keep_result=0,
                run_at_startup=True,
                max_tries=1,
                timeout=120,
            ),
            cron(
                tick,
                name="tick",
                second=every_second,
                keep_result=0,
                run_at_startup=True,
                max_tries=1,
                timeout=60,
            ),
            cron(
                prune_ledger,
                name="prune_ledger",
                minute=PRUNE_MINUTE,
                second=0,
                keep_result=0,
                max_tries=1,
                timeout=PRUNE_TIMEOUT_SECONDS,
            ),
            cron(
                partitions_ahead,
                name="ledger_partitions_ahead",
                minute=PARTITIONS_MINUTE,
                second=0,
                keep_result=0,
                max_tries=1,
                timeout=120,
            ),
        ],
        # arq's queue on a client like every other (timeouts; the primary found through
        # the sentinels when there are some): arq's own Sentinel pool has no socket timeout,
        # and a primary that hangs instead of dying would hold the worker for good.
        redis_pool=connect_redis(settings),
        queue_name=QUEUE,
        on_startup=startup,
        on_shutdown=shutdown,
        burst=burst,
        handle_signals=handle_signals,
        max_jobs=PUMPS_PER_CAMPAIGN * 4,
        poll_delay=POLL_SECONDS,
        **overrides,
    )


def run_worker(settings: Settings, *, burst: bool = False) -> None:
    asyncio.run(serve(settings, burst=burst))


async def serve(
    settings: Settings, *, burst: bool = False, stop: asyncio.Event | None = None
) -> None:
    """Run a worker until SIGTERM or SIGINT, or until `stop` is set when the caller owns the
    signals (in burst mode, until the queue is empty).

    On SIGTERM the worker takes no new job, and its send jobs start no new batch: each ends
    with the batch in flight (within the provider timeout), recorded, so a rolling restart
    neither re-sends nor strands a leased row, and the campaign's other rows are sent by the
    other workers; what is still running after `pump_timeout` is cancelled, and its rows go
    back to the queue when their lease ends. Losing Redis does not end the process: the
    worker is built again once Redis answers, and the reconciler (the tick) restores from
    PostgreSQL whatever Redis lost.

    For as long as it runs, the process serves its metrics on WAVECAST_WORKER_METRICS_PORT
    (`workers.metrics`), also while Redis is away.
    """
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    # The process's endpoint, served across the arq workers built below, and while Redis
    # is away (what a dashboard most wants to see then).
    metrics = await start_metrics_server(settings)
    try:
        await _serve(settings, burst=burst, stop=stop, metrics=metrics)
    finally:
        if metrics is not None:
            await metrics.aclose()


async def _serve(
    settings: Settings, *, burst: bool, stop: asyncio.Event, metrics: MetricsServer | None
) -> None:
    delay = RECONNECT_FIRST_SECONDS
    while not stop.is_set():
        # arq's Worker binds to the event loop current at construction: build it in this one.
        worker = build_worker(settings, burst=burst, metrics=metrics)
        running = asyncio.create_task(worker.main())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        # Stops polling for jobs; the jobs themselves are separate tasks.
        await _stop_polling(running)
        try:
            running.result()
            if burst:
                stop.set()
        except asyncio.CancelledError:
            pass
        except (RedisError, OSError) as exc:
            log.warning(
                "lost Redis; the worker starts again once it answers", extra={"error": str(exc)}
            )
        else:
            delay = RECONNECT_FIRST_SECONDS
        # Send jobs stop by themselves: told to, they start no new batch and end with the
        # one in flight, recorded (`SenderDeps.stopping`); cancelling them instead could
        # leave sent rows on a lease, to be sent again when it ends.
        wc: WorkerContext | None = worker.ctx.get("wavecast")
        if wc is not None:
            wc.sender.stopping.set()
        jobs = {job_id: t for job_id, t in worker.tasks.items() if not t.done()}
        if jobs:
            await _drain(jobs, within=pump_timeout(settings))
        if metrics is not None:
            metrics.attach(None)
        await _close(worker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(RECONNECT_MAX_SECONDS, delay * 2)


# How often the stop repeats the cancellation of arq's poller until it has ended.
POLLER_CANCEL_EVERY = 1.0


async def _stop_polling(running: asyncio.Task[None]) -> None:
    """Cancel arq's poller (`Worker.main`) and wait until it has ended.

    Once is not always enough: a cancellation that lands inside a library call can be
    swallowed there, and the poller then went on starting cron jobs for as long as the
    process lived (seen under load: a worker still polling 30 s after SIGTERM, the outbox job
    started every second). So the cancellation is repeated until the task ends."""
    while not running.done():
        running.cancel()
        await asyncio.wait({running}, timeout=POLLER_CANCEL_EVERY)


# A stop that takes longer than this names the jobs it is waiting for (in the log).
DRAIN_REPORT_SECONDS = 5.0


async def _drain(jobs: dict[str, asyncio.Task[Any]], *, within: float) -> None:
    """Wait for the running jobs to end, up to `within` seconds; say which ones a slow stop waits
    for, and which were still running when it gave up on them."""
    started = time.monotonic()
    _, pending = await asyncio.wait(jobs.values(), timeout=min(within, DRAIN_REPORT_SECONDS))
    if not pending:
        return
    waiting = sorted(job_id for job_id, t in jobs.items() if t in pending)
    log.warning("stopping: waiting for running jobs", extra={"jobs": waiting})
    _, pending = await asyncio.wait(pending, timeout=within - (time.monotonic() - started))
    if pending:
        left = sorted(job_id for job_id, t in jobs.items() if t in pending)
        log.warning("stopping: jobs still running are cancelled", extra={"jobs": left})


async def _close(worker: Worker) -> None:
    """Close the worker; when Redis is gone arq's own close fails before its shutdown hook,
    so the database engine and the providers are closed here instead."""
    try:
        await worker.close()
    except (RedisError, OSError):
        with contextlib.suppress(Exception):
            await worker.pool.aclose()
        wc: WorkerContext | None = worker.ctx.get("wavecast")
        if wc is not None:
            with contextlib.suppress(Exception):
                await wc.providers.aclose()
            with contextlib.suppress(Exception):
                await wc.runtime.close()
