"""The block feed: provider blocks written by any worker, pushed into every worker process.

`Throttle.block_until` publishes each block it writes (a provider's Retry-After, an APNs
pause) on the throttle's `blocks_channel`. One feed per worker process listens there and
`learn`s each block into the in-process `LocalBlock` of the provider it names, the block a
provider reads right before each request leaves. So a call already under way on this worker
stops sending the moment another worker is told to wait, instead of finding out from its own
refusals.

The feed only speeds the news up; the block in Redis stays the truth, and the sender's
reservation and the provider's look before each call still read it. So a feed that is down
costs speed, never safety, and never stops a worker: it reconnects with backoff (one warning
per outage), and on every (re)subscription reads the blocks as Redis has them, which covers
whatever was published while it was away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub

from app.control.throttle import Throttle
from app.delivery.providers.local_block import LocalBlock

log = logging.getLogger("wavecast.block_feed")

# The subscription's name in CLIENT LIST.
CLIENT_NAME = "wavecast-block-feed"
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0
# How long one read waits for a message (the loop's pace when nothing is published).
LISTEN_SECONDS = 1.0
CONFIRM_SECONDS = 5.0
# A connection silent this long is asked for a PING; one still silent twice as long is taken
# for dead (a half-open connection never says it dropped).
PING_AFTER_SECONDS = 5.0


class BlockFeed:
    """Applies every block published on ``throttle.blocks_channel`` to ``blocks[scope]``;
    scopes not in ``blocks`` are ignored. `start` once, `stop` once."""

    def __init__(self, redis: Redis, throttle: Throttle, blocks: Mapping[str, LocalBlock]) -> None:
        # A pool of its own, with the client's address and options: the subscription holds a
        # connection for the feed's life, named so it can be told apart in CLIENT LIST.
        pool = redis.connection_pool
        self._pool = ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "client_name": CLIENT_NAME},
        )
        self._throttle = throttle
        self._blocks = dict(blocks)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._blocks and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="block-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._pool.disconnect()

    async def _run(self) -> None:
        delay = RECONNECT_FIRST_SECONDS
        down = False
        while True:
            try:
                async with PubSub(self._pool) as pubsub:
                    await pubsub.subscribe(self._throttle.blocks_channel)
                    # Redis is read once the subscription is in force, so no block written
                    # meanwhile falls between the two.
                    confirmed = await pubsub.get_message(timeout=CONFIRM_SECONDS)
                    if confirmed is None or confirmed["type"] != "subscribe":
                        raise ConnectionError("the subscription was not confirmed")
                    await self._catch_up()
                    if down:
                        log.info("block feed listening again")
                        down = False
                    delay = RECONNECT_FIRST_SECONDS
                    await self._listen(pubsub)
            except Exception as exc:
                # Redis restarted, the connection was killed or went quiet, or Redis is
                # unreachable: the checks that read Redis itself still hold every request.
                if not down:
                    log.warning(
                        "block feed not subscribed; retrying with backoff (blocks are still "
                        "read from Redis before every batch and every call)",
                        extra={"error": f"{type(exc).__name__}: {exc}"},
                    )
                    down = True
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX_SECONDS, delay * 2)

    async def _catch_up(self) -> None:
        """The blocks in force now: those published while the feed was not subscribed."""
        for scope, block in self._blocks.items():
            block.learn(await self._throttle.blocked_for(scope))

    async def _listen(self, pubsub: PubSub) -> None:
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=LISTEN_SECONDS)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, False
                if message["type"] == "message":
                    self._apply(message["data"])
                continue
            if now - heard > 2 * PING_AFTER_SECONDS:
                raise ConnectionError(f"no answer to a PING within {PING_AFTER_SECONDS:.0f}s")
            if now - heard > PING_AFTER_SECONDS and not pinged:
                await pubsub.ping()
                pinged = True

    def _apply(self, data: bytes | str) -> None:
        try:
            notice = json.loads(data)
            scope, seconds = notice["scope"], float(notice["seconds"])
        except (ValueError, TypeError, KeyError):
            log.warning("block feed: a message it cannot read", extra={"data": repr(data)[:200]})
            return
        block = self._blocks.get(scope)
        if block is not None and math.isfinite(seconds) and seconds > 0:
            block.learn(seconds)
