"""The send gate in Redis: the fast path of the kill switch, shared by every process.

Invariant: a provider request starts only under a *permit*, and a permit is granted only
while both the global grant and the campaign's grant are open. Stopping (kill, pause,
cancel, the global switch) closes a grant and then waits until the permits taken before
the close have been released; only then does the API answer. So once the answer is sent,
no provider request for the stopped campaigns starts on any worker.

Grants are positive and versioned. A missing grant is closed: when Redis loses its data,
nothing is sent until the reconciler rewrites the grants from PostgreSQL, and a stale
writer can never overwrite a newer grant (see gate.lua).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path

from redis.asyncio import Redis

PREFIX = "wavecast:gate"
GLOBAL_KEY = f"{PREFIX}:global"
PERMITS_KEY = f"{PREFIX}:permits"
# A closed grant of a finished campaign is kept this long, then forgotten; the database
# still says the campaign is finished, so a forgotten grant stays closed.
TERMINAL_GRANT_TTL = 7 * 24 * 3600

_SCRIPT = (Path(__file__).with_name("gate.lua")).read_text()


def campaign_key(campaign_id: uuid.UUID | str) -> str:
    return f"{PREFIX}:campaign:{campaign_id}"


class Refusal(IntEnum):
    global_closed = -1
    campaign_closed = -2


class Renewal(IntEnum):
    """What renewing a permit found."""

    open = 1
    closed = 0
    # The permit expired before it was renewed: a stop may have stopped waiting for it.
    lost = -1


class GateClosed(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.name)
        self.refusal = refusal


class Gate:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(_SCRIPT)

    async def _call(self, keys: list[str], *args: str | int | float) -> int:
        result = await self._script(keys=keys, args=list(args))
        return int(result)

    async def set_global(self, open_: bool, version: int) -> bool:
        return bool(
            await self._call([GLOBAL_KEY], "set", "open" if open_ else "closed", version, 0)
        )

    async def set_campaign(
        self, campaign_id: uuid.UUID, open_: bool, version: int, *, terminal: bool = False
    ) -> bool:
        ttl = TERMINAL_GRANT_TTL if terminal else 0
        return bool(
            await self._call(
                [campaign_key(campaign_id)], "set", "open" if open_ else "closed", version, ttl
            )
        )

    async def acquire(self, campaign_id: uuid.UUID, ttl_seconds: float) -> str:
        """A permit to start provider requests for this campaign, or GateClosed.

        Raises redis errors as they are: a worker that cannot reach the gate does not send.
        """
        permit = uuid.uuid4().hex
        result = await self._call(
            [GLOBAL_KEY, campaign_key(campaign_id), PERMITS_KEY],
            "acquire",
            str(campaign_id),
            permit,
            int(ttl_seconds * 1000),
        )
        if result != 1:
            raise GateClosed(Refusal(result))
        return permit

    async def renew(
        self, permits: Sequence[tuple[uuid.UUID, str]], ttl_seconds: float
    ) -> list[Renewal]:
        """Extend held permits by `ttl_seconds` and say, for each, whether its grants are
        still open (one round trip for all of a process's permits)."""
        if not permits:
            return []
        result = await self._script(
            keys=[GLOBAL_KEY, PERMITS_KEY, *(campaign_key(c) for c, _ in permits)],
            args=[
                "renew",
                int(ttl_seconds * 1000),
                *(f"{campaign}|{permit}" for campaign, permit in permits),
            ],
        )
        return [Renewal(int(r)) for r in result]

    async def release(self, campaign_id: uuid.UUID, permit: str) -> None:
        await self._call([PERMITS_KEY], "release", str(campaign_id), permit)

    async def in_flight(self, campaign_id: uuid.UUID | None = None) -> int:
        prefix = "" if campaign_id is None else str(campaign_id)
        return await self._call([PERMITS_KEY], "inflight", prefix)

    async def drain(self, campaign_id: uuid.UUID | None, *, within: float) -> int:
        """Wait until the permits taken before a close are released; returns how many are
        still held when `within` seconds run out (0 when drained)."""
        deadline = time.monotonic() + within
        while True:
            held = await self.in_flight(campaign_id)
            if held == 0 or time.monotonic() >= deadline:
                return held
            await asyncio.sleep(0.005)
