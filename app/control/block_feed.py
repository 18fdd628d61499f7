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
from collections.abc import Mapping

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub

from app.control.throttle import Throttle
from app.delivery.providers.local_block import LocalBlock
from app.redis_subscription import follow

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
        # Any failure, not only Redis's: the checks that read Redis itself still hold every
        # request, so nothing here may stop the feed for good.
        await follow(
            lambda: PubSub(self._pool),
            self._throttle.blocks_channel,
            on_subscribed=self._catch_up,
            on_message=self._apply,
            log=log,
            down_message=(
                "block feed not subscribed; retrying with backoff (blocks are still "
                "read from Redis before every batch and every call)"
            ),
            up_message="block feed listening again",
            errors=(Exception,),
            retry_first_seconds=RECONNECT_FIRST_SECONDS,
            retry_max_seconds=RECONNECT_MAX_SECONDS,
            confirm_seconds=CONFIRM_SECONDS,
            listen_seconds=LISTEN_SECONDS,
            ping_after_seconds=PING_AFTER_SECONDS,
        )

    async def _catch_up(self) -> None:
        """The blocks in force now: those published while the feed was not subscribed."""
        for scope, block in self._blocks.items():
            block.learn(await self._throttle.blocked_for(scope))

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
