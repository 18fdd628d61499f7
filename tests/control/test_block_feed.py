"""A provider block written by any worker reaches every worker's in-process block at once.

Against the suite's Redis: the throttle script publishes each block it writes, a feed in this
process applies what it hears to the right provider's `LocalBlock`, and the feed outlives its
connection. "Another worker" is another Redis client writing through `Throttle.block_until`,
as a worker's sender does. Calls held back by the feed: tests/delivery/providers/test_fcm.py
and test_apns.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from redis.asyncio import Redis

from app.control.block_feed import BlockFeed
from app.control.plane import provider_scope
from app.control.throttle import Throttle
from app.delivery.providers.local_block import LocalBlock
from app.runtime import Runtime
from tests.support import feed_connections, listening_feed, wait_for

FCM = provider_scope("fcm")
APNS = provider_scope("apns")


async def test_a_written_block_is_published_with_the_seconds_left(db: Runtime) -> None:
    throttle = Throttle(db.redis)
    async with db.redis.pubsub() as pubsub:
        await pubsub.subscribe(throttle.blocks_channel)
        subscribed = await pubsub.get_message(timeout=1)
        assert subscribed is not None and subscribed["type"] == "subscribe"

        await throttle.block_until(FCM, 2.5)
        message = await pubsub.get_message(timeout=1)
        assert message is not None and message["type"] == "message"
        notice = json.loads(message["data"])
        assert notice["scope"] == FCM
        # Seconds left as the server computed them when it wrote the key, which then holds
        # the same end: no worker's clock in between.
        assert notice["seconds"] == pytest.approx(2.5, abs=1e-6)
        assert 2.0 < await throttle.blocked_for(FCM) <= notice["seconds"]

        # A shorter block writes nothing, so it tells nobody anything.
        await throttle.block_until(FCM, 0.5)
        assert await pubsub.get_message(timeout=0.3) is None

        await throttle.block_until(FCM, 4)
        message = await pubsub.get_message(timeout=1)
        assert message is not None
        assert json.loads(message["data"]) == {"scope": FCM, "seconds": pytest.approx(4, abs=1e-6)}


def test_each_database_has_its_own_channel() -> None:
    # Pub/sub ignores databases: a block in one must not reach workers of another.
    channels = {Throttle(Redis(db=n)).blocks_channel for n in (0, 9)}
    assert len(channels) == 2


async def test_the_feed_applies_a_block_to_its_provider_only_and_only_lengthens(
    db: Runtime, elsewhere: Throttle
) -> None:
    fcm, apns = LocalBlock(), LocalBlock()
    feed = await listening_feed(db, {FCM: fcm, APNS: apns})
    try:
        await elsewhere.block_until(APNS, 3)

        async def apns_blocked() -> bool:
            return apns.remaining() > 2.5

        await wait_for(apns_blocked, within=1, interval=0.01)
        assert fcm.remaining() == 0.0

        # This worker already holds FCM for longer than the block another worker writes now.
        fcm.learn(6)
        await elsewhere.block_until(FCM, 1)
        await elsewhere.block_until("campaign:not-a-provider", 30)
        # Messages are applied in order: once this one is seen, so were the two before it.
        await elsewhere.block_until(APNS, 8)

        async def apns_lengthened() -> bool:
            return apns.remaining() > 7.5

        await wait_for(apns_lengthened, within=1, interval=0.01)
        assert fcm.remaining() > 5.5
    finally:
        await feed.stop()


async def test_the_feed_survives_its_connection_being_killed(
    db: Runtime, elsewhere: Throttle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wavecast.block_feed")
    block = LocalBlock()
    feed = await listening_feed(db, {FCM: block})
    try:
        [killed] = await feed_connections(db)
        await db.redis.execute_command("CLIENT", "KILL", "ID", str(killed))

        async def listening_again() -> bool:
            [(_name, count)] = await db.redis.pubsub_numsub(Throttle(db.redis).blocks_channel)
            return count >= 1 and killed not in await feed_connections(db)

        await wait_for(listening_again, within=10)
        await elsewhere.block_until(FCM, 2)

        async def blocked() -> bool:
            return block.remaining() > 1.5

        await wait_for(blocked, within=1, interval=0.01)
        # Lengthened after the reconnection's own read of Redis: only the subscription
        # brings this one.
        await elsewhere.block_until(FCM, 6)

        async def lengthened() -> bool:
            return block.remaining() > 5.5

        await wait_for(lengthened, within=1, interval=0.01)
    finally:
        await feed.stop()
    warnings = [r for r in caplog.records if r.name == "wavecast.block_feed"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def test_a_feed_without_redis_warns_once_and_stops_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wavecast.block_feed")
    nowhere = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    block = LocalBlock()
    feed = BlockFeed(nowhere, Throttle(nowhere), {FCM: block})
    feed.start()
    # Attempts at 0, 0.5 and 1.5 s: three failures, one outage.
    await asyncio.sleep(1.8)
    started = time.monotonic()
    await feed.stop()
    assert time.monotonic() - started < 0.5
    warnings = [r for r in caplog.records if r.name == "wavecast.block_feed"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert block.remaining() == 0.0
    await nowhere.aclose()
