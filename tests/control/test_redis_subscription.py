"""`follow` keeps a subscription through Redis outages, on a redis-server of the test's own.

The server starts late, is killed and started again, or drops the subscriber with CLIENT
KILL; the loop must notice alone, warn once per outage (not once per attempt), say once that
it is back, run `on_subscribed` after every (re)subscription and hand on what is published
afterwards. Its users: app/control/block_feed.py and app/auth/key_cache.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from app.redis_subscription import follow
from app.runtime import connect_redis
from app.settings import Settings
from tests.reliability.support import PrivateRedis

CHANNEL = "wavecast-test-subscription"
LOGGER = "wavecast.test_redis_subscription"
DOWN = "test subscription: not subscribed, retrying"
UP = "test subscription: listening again"
RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 0.2
# Every wait below ends here at the latest: a loop that never recovers fails, never hangs.
WITHIN_SECONDS = 5.0


@dataclass
class Subscriber:
    """What the loop did: its attempts to open a subscription, and what it handed on (in
    order, so a catch-up is seen to come before the messages that follow it)."""

    opens: int = 0
    events: list[str | bytes] = field(default_factory=list)

    @property
    def subscriptions(self) -> int:
        return self.events.count("subscribed")

    @property
    def messages(self) -> list[str | bytes]:
        return [e for e in self.events if e != "subscribed"]


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    """A free port, its redis-server not started yet: the test decides when it is up."""
    server = PrivateRedis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


@contextlib.asynccontextmanager
async def following(server: PrivateRedis) -> AsyncIterator[Subscriber]:
    """`follow` running in a task on `server`'s address, cancelled on the way out."""
    subscriber = Subscriber()
    # Built as every Wavecast process builds its client: a client that reconnected and
    # subscribed again by itself would skip `on_subscribed`, and these tests would see it.
    client = connect_redis(
        Settings(redis_url=f"redis://127.0.0.1:{server.port}/0")  # type: ignore[call-arg]
    )

    def open_pubsub() -> PubSub:
        subscriber.opens += 1
        return client.pubsub()

    async def on_subscribed() -> None:
        subscriber.events.append("subscribed")

    task = asyncio.create_task(
        follow(
            open_pubsub,
            CHANNEL,
            on_subscribed=on_subscribed,
            on_message=subscriber.events.append,
            log=logging.getLogger(LOGGER),
            down_message=DOWN,
            up_message=UP,
            errors=(RedisError, OSError),
            retry_first_seconds=RETRY_FIRST_SECONDS,
            retry_max_seconds=RETRY_MAX_SECONDS,
            confirm_seconds=1.0,
            listen_seconds=0.05,
            # Never reached here: only outages end a subscription in these tests.
            ping_after_seconds=60.0,
        )
    )
    try:
        yield subscriber
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), "follow ended by itself"
        await client.aclose()


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WITHIN_SECONDS
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WITHIN_SECONDS} s: {what}")
        await asyncio.sleep(0.01)


def logged(caplog: pytest.LogCaptureFixture, level: int, message: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level and r.getMessage() == message
    ]


async def start(server: PrivateRedis) -> None:
    # PrivateRedis.start waits for the first PONG with blocking sleeps: off the event loop,
    # where the subscription keeps retrying meanwhile.
    await asyncio.to_thread(server.start)


async def publish_and_receive(server: PrivateRedis, subscriber: Subscriber, data: bytes) -> None:
    async with Redis(host="127.0.0.1", port=server.port, socket_timeout=2) as publisher:
        # `on_subscribed` ran once the subscription was confirmed: it is in force already.
        assert await publisher.publish(CHANNEL, data) == 1
    await until(lambda: data in subscriber.messages, f"{data!r} handed on")


async def fail_repeatedly(subscriber: Subscriber, attempts: int) -> None:
    """Wait out `attempts` more failed attempts to subscribe."""
    goal = subscriber.opens + attempts
    before = subscriber.subscriptions
    await until(lambda: subscriber.opens >= goal, f"{attempts} more attempts")
    assert subscriber.subscriptions == before


async def test_one_warning_per_outage_and_a_new_subscription_after_each(
    server: PrivateRedis, caplog_info: pytest.LogCaptureFixture
) -> None:
    async with following(server) as subscriber:
        # Nothing listens on the port yet: attempt after attempt fails, one warning says so.
        await fail_repeatedly(subscriber, 5)
        [down] = logged(caplog_info, logging.WARNING, DOWN)
        assert down.__dict__["error"].startswith("ConnectionError: ")
        assert logged(caplog_info, logging.INFO, UP) == []

        await start(server)
        await until(lambda: subscriber.subscriptions == 1, "subscribed once the server is up")
        assert len(logged(caplog_info, logging.INFO, UP)) == 1
        await publish_and_receive(server, subscriber, b"first")

        # The server dies: a second outage, a second warning, and still only that one while
        # the attempts keep failing.
        server.stop()
        await until(
            lambda: len(logged(caplog_info, logging.WARNING, DOWN)) == 2, "a second warning"
        )
        await fail_repeatedly(subscriber, 4)
        assert len(logged(caplog_info, logging.WARNING, DOWN)) == 2

        await start(server)
        await until(lambda: subscriber.subscriptions == 2, "subscribed again after a restart")
        assert len(logged(caplog_info, logging.INFO, UP)) == 2
        await publish_and_receive(server, subscriber, b"second")

        assert subscriber.events == ["subscribed", b"first", "subscribed", b"second"]
        assert len(logged(caplog_info, logging.WARNING, DOWN)) == 2


async def test_a_subscription_dropped_by_the_server_is_opened_again(
    server: PrivateRedis, caplog_info: pytest.LogCaptureFixture
) -> None:
    await start(server)
    async with following(server) as subscriber:
        await until(lambda: subscriber.subscriptions == 1, "subscribed")
        # A first subscription ends no outage: nothing to warn of, nothing to announce.
        assert logged(caplog_info, logging.INFO, UP) == []
        assert logged(caplog_info, logging.WARNING, DOWN) == []
        await publish_and_receive(server, subscriber, b"before")

        async with Redis(host="127.0.0.1", port=server.port, socket_timeout=2) as admin:
            assert await admin.client_kill_filter(_type="pubsub") == 1

        await until(lambda: subscriber.subscriptions == 2, "subscribed again after CLIENT KILL")
        [down] = logged(caplog_info, logging.WARNING, DOWN)
        assert down.__dict__["error"].startswith("ConnectionError: ")
        assert len(logged(caplog_info, logging.INFO, UP)) == 1
        await publish_and_receive(server, subscriber, b"after")

        assert subscriber.events == ["subscribed", b"before", "subscribed", b"after"]
