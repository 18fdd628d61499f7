"""A provider's Retry-After block as one worker process knows it, read before every request.

The block in Redis (`Throttle.block_until`) is the truth every worker shares; asking Redis
before each request would cost a round trip a request. So each provider keeps this copy, read
with no I/O right before a request leaves, and written from two sides:
- `hold`: an answer seen here asks everyone to wait. Held at once, and written to Redis
  through the batch's `ProviderBlock` for every other worker;
- `learn`: a block some worker (this one included) wrote to Redis, heard through the block
  feed (`app.control.block_feed`). Held only: it is in Redis already, and writing it back
  would publish it again, to every feed, for ever.
A request held back by it is `unsent` (`providers.base`): not an attempt, due again when the
block has passed.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

log = logging.getLogger("wavecast.providers")


class ProviderBlock(Protocol):
    """The provider-wide Retry-After block shared by every worker (the sender's throttle).

    A provider that sees each answer as it arrives writes a block at once through ``block``,
    and asks ``remaining`` right before a call leaves, so nothing goes out inside a window
    another worker (or another call) already knows about."""

    async def remaining(self) -> float:
        """Seconds until the block ends; 0.0 when there is none."""

    async def block(self, seconds: float) -> None:
        """No request may leave within ``seconds`` from now (only ever lengthens)."""


class LocalBlock:
    """One provider's block in this process, shared by all its connections. Only ever
    lengthens; the instants are this process's monotonic clock."""

    def __init__(self) -> None:
        self._until = 0.0
        self.shared: ProviderBlock | None = None

    def remaining(self) -> float:
        return max(0.0, self._until - time.monotonic())

    async def hold(self, seconds: float) -> None:
        """An answer here asked for ``seconds``: hold from now, and tell every worker before
        this answer is handed on. Written by the answer's own task, not a task of its own:
        one scheduled behind the rest of a busy event loop reached the other workers tens
        of milliseconds later, while their requests kept leaving."""
        self.learn(seconds)
        shared = self.shared
        if shared is None:
            return
        try:
            await shared.block(seconds)
        except Exception:
            # The sender writes the block again when the call returns; a failure there stops
            # the send loop. Local requests are held already.
            log.warning("could not publish a Retry-After block", exc_info=True)

    def learn(self, seconds: float) -> None:
        """A block already in Redis: hold from now, publish nothing. ``seconds`` is what was
        left on the Redis server's clock when it was written, so a copy heard late ends a
        little after the shared block, never before it."""
        self._until = max(self._until, time.monotonic() + seconds)
