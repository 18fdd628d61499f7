"""A Redis subscription kept for a process's life, whatever Redis does meanwhile.

`follow` guarantees, for as long as it runs (it ends only when cancelled, or on an error it
was not told to survive):

- `on_subscribed` runs after every confirmed (re)subscription and before any message is
  handed on, so whatever was published while nobody listened is caught up there;
- an outage costs one warning, however many attempts fail, and its end one info line;
- a connection silent for `ping_after` seconds is sent a PING, and one still silent twice
  that long is taken for dead and opened again (a half-open connection never says it
  dropped).

Messages are read `listen_seconds` at a time, below the client's socket timeout: a blocking
read would time out every few seconds on a quiet channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.asyncio.client import PubSub


async def follow(
    open_pubsub: Callable[[], PubSub],
    channel: str,
    *,
    on_subscribed: Callable[[], Awaitable[None]],
    on_message: Callable[[bytes | str], None],
    log: logging.Logger,
    down_message: str,
    up_message: str,
    errors: tuple[type[Exception], ...],
    retry_first_seconds: float,
    retry_max_seconds: float,
    confirm_seconds: float,
    listen_seconds: float,
    ping_after_seconds: float,
) -> None:
    """Hand every message published on `channel` to `on_message`. A failure in `errors`
    (in Redis, or in either callback) closes the subscription and opens a new one after
    `retry_first_seconds`, doubling up to `retry_max_seconds` while it keeps failing."""
    delay = retry_first_seconds
    down = False
    while True:
        try:
            async with open_pubsub() as pubsub:
                await pubsub.subscribe(channel)
                # The catch-up reads once the subscription is in force, so nothing published
                # meanwhile falls between the two.
                confirmed = await pubsub.get_message(timeout=confirm_seconds)
                if confirmed is None or confirmed["type"] != "subscribe":
                    raise ConnectionError("the subscription was not confirmed")
                await on_subscribed()
                if down:
                    log.info(up_message)
                    down = False
                delay = retry_first_seconds
                await _listen(pubsub, on_message, listen_seconds, ping_after_seconds)
        except errors as exc:
            if not down:
                log.warning(down_message, extra={"error": f"{type(exc).__name__}: {exc}"})
                down = True
        await asyncio.sleep(delay)
        delay = min(retry_max_seconds, delay * 2)


async def _listen(
    pubsub: PubSub,
    on_message: Callable[[bytes | str], None],
    listen_seconds: float,
    ping_after_seconds: float,
) -> None:
    heard, pinged = time.monotonic(), False
    while True:
        message = await pubsub.get_message(timeout=listen_seconds)
        now = time.monotonic()
        if message is not None:
            heard, pinged = now, False
            if message["type"] == "message":
                on_message(message["data"])
            continue
        if now - heard > 2 * ping_after_seconds:
            raise ConnectionError(f"no answer to a PING within {ping_after_seconds:.0f} s")
        if now - heard > ping_after_seconds and not pinged:
            await pubsub.ping()
            pinged = True
