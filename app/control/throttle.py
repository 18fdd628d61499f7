"""Cross-process throttle: per-campaign rates and per-provider caps held in Redis.

Every worker process reserves sends through one Lua script (``throttle.lua``), so the rates hold
across all workers together (SPEC §3 "Throttling") and a rate change or a provider's 429 is seen
by every worker's next reservation. The arithmetic, its fidelity bound and its trade-offs are in
``throttle_math``; the script repeats it operation for operation.

How the sender uses it (app.delivery.sender): it sizes a batch from the campaign's current
rate (`get_rate` + `batch_size_for_rate`), claims that many rows, then calls `reserve_batch`
for the rows it will send (sized in Redis at that moment, so a rate cut since the claim
applies), sleeps until they are due, reserves on the provider-wide caps, and takes the send
gate's permit. `RateUnknown` means Redis lost the rate: the sender republishes it from the
database before sending anything; `RatePaused` (rate 0) stops the send loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from app.control.throttle_math import (
    DEFAULT_MAX_BATCH,
    DEFAULT_WINDOW_FRACTION,
    RatePaused,
    batch_size_for_rate,
)

__all__ = ["Grant", "RatePaused", "RateUnknown", "Throttle", "grant_of", "rate_of"]

_LUA = Path(__file__).with_name("throttle.lua").read_text(encoding="utf-8")
_UNLIMITED = "unlimited"


class RateUnknown(Exception):
    """A scope has no rate in Redis (never set, or Redis lost it).

    Callers fail closed: send nothing, load the rate from the database, ``set_rate`` it, retry.
    Nothing was reserved on any scope.
    """

    def __init__(self, scopes: Sequence[str]) -> None:
        self.scopes = tuple(scopes)
        super().__init__(f"no throttle rate in Redis for {', '.join(self.scopes)}")


@dataclass(frozen=True, slots=True)
class Grant:
    """A reservation taken: send ``n`` after sleeping ``wait`` seconds."""

    n: int
    """0 when a scope is blocked (Retry-After): nothing was reserved; sleep ``wait`` (to the
    block's end) and ask again."""
    wait: float
    start: float
    """Server-clock instant (Redis TIME, epoch seconds) the sends are due."""
    now: float
    """Server clock when the reservation was taken; ``wait == start - now``."""


class Throttle:
    """Rates, reservations and 429 blocks for named scopes, shared through Redis.

    A scope is any string naming what a rate limits, e.g. ``campaign:42`` or ``provider:fcm``.
    The client may or may not decode responses.
    """

    def __init__(self, redis: Redis, *, prefix: str = "wavecast:throttle") -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_LUA)
        # Where every block written is published (`block_until`). Pub/sub channels are
        # server-wide, not per database: the database is in the name, so a deployment (or a
        # test run) on another database of the same server is not blocked by this one.
        database = redis.connection_pool.connection_kwargs.get("db", 0)
        self.blocks_channel = f"{prefix}:blocks:db{database}"

    async def set_rate(self, scope: str, per_second: float | None) -> None:
        """None = unlimited, 0 = paused. Stored without expiry; every worker's next
        reservation uses it (no worker caches rates)."""
        if per_second is None:
            value = _UNLIMITED
        else:
            batch_size_for_rate(per_second)  # validates: finite and >= 0
            value = repr(float(per_second))
        await self._redis.set(self._key(scope, "rate"), value)

    async def get_rate(self, scope: str) -> float | None:
        """Sends per second (0.0 = paused), None = unlimited; raises RateUnknown when unset."""
        raw = await self._redis.get(self._key(scope, "rate"))
        if raw is None:
            raise RateUnknown([scope])
        return rate_of(raw)

    async def reserve(self, scopes: Sequence[str], n: int) -> float:
        """Atomically reserve exactly ``n`` sends on all ``scopes``; returns seconds to wait
        before sending them. Raises RateUnknown or RatePaused (nothing reserved then).

        Size ``n`` with ``batch_size_for_rate`` of the tightest rate, or the fidelity bound
        does not hold; ``reserve_batch`` does that sizing in Redis at reservation time."""
        grant = await self._reserve(scopes, n, batched=False)
        return grant.wait

    async def reserve_batch(
        self,
        scopes: Sequence[str],
        want: int,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        window_fraction: float = DEFAULT_WINDOW_FRACTION,
    ) -> Grant:
        """Like ``reserve``, but takes ``min(want, one batch)``, the batch being
        ``batch_size_for_rate`` of the tightest rate as it is in Redis at that moment. A worker
        that sized batches itself from a rate read earlier would keep the old size after a
        rate cut and overshoot the new rate by up to the old batch per window.

        While any scope is blocked it reserves nothing and grants ``n = 0`` with ``wait`` up
        to the block's end: the caller sleeps and asks again, so a block lengthened meanwhile
        (a later, longer Retry-After) still holds it back (``throttle_math.block_in_force``)."""
        # Refuse a bad policy here, where the caller's stack points at it, not as a Lua error.
        batch_size_for_rate(None, max_batch=max_batch, window_fraction=window_fraction)
        return await self._reserve(
            scopes, want, batched=True, max_batch=max_batch, window_fraction=window_fraction
        )

    async def block_until(self, scope: str, seconds_from_now: float) -> None:
        """No reservation on ``scope`` starts within ``seconds_from_now`` (server clock), on
        any worker. Only ever lengthens a block. Reservations granted before it was written are
        not recalled: their senders may still hit the provider inside the block. Batched
        reservations are never granted across a block, so a lengthened block holds them too.

        A block written (new or lengthened) is published on ``blocks_channel``, atomically
        with the write, as JSON ``{"scope": ..., "seconds": ...}`` (seconds left on the server
        clock): each worker's block feed holds the requests it has under way from then on."""
        if not seconds_from_now >= 0.0 or math.isinf(seconds_from_now):
            raise ValueError(f"block seconds must be finite and >= 0, got {seconds_from_now}")
        await self._script(
            keys=[self._key(scope, "blocked")],
            args=["block", repr(float(seconds_from_now)), self.blocks_channel, scope],
        )

    async def blocked_for(self, scope: str) -> float:
        """Seconds until ``scope``'s block ends; 0.0 when it is not blocked."""
        reply = await self._script(keys=[self._key(scope, "blocked")], args=["blocked_for"])
        return float(_text(reply[0]))

    async def forget(self, scope: str) -> None:
        """Drop a scope's rate, tat and block, e.g. when its campaign reaches a terminal state.
        A worker still reserving on it afterwards gets RateUnknown."""
        await self._redis.delete(*(self._key(scope, part) for part in ("rate", "tat", "blocked")))

    async def _reserve(
        self,
        scopes: Sequence[str],
        want: int,
        *,
        batched: bool,
        max_batch: int = DEFAULT_MAX_BATCH,
        window_fraction: float = DEFAULT_WINDOW_FRACTION,
    ) -> Grant:
        keys, args = self.reservation(
            scopes, want, batched=batched, max_batch=max_batch, window_fraction=window_fraction
        )
        return grant_of(scopes, await self._script(keys=keys, args=args))

    def reservation(
        self,
        scopes: Sequence[str],
        want: int,
        *,
        batched: bool,
        max_batch: int = DEFAULT_MAX_BATCH,
        window_fraction: float = DEFAULT_WINDOW_FRACTION,
    ) -> tuple[list[str], list[str]]:
        """The keys and arguments of the script's `reserve` operation (`app.control.admit`
        runs it inside a batch's admission); its reply is read by `grant_of`."""
        if isinstance(scopes, str):
            raise TypeError("scopes must be a sequence of scope names, not one string")
        if not scopes:
            raise ValueError("reserve needs at least one scope")
        if len(set(scopes)) != len(scopes):
            # The script reads every scope before writing any; a repeated scope would be
            # charged once while looking like two.
            raise ValueError(f"scopes must be distinct, got {list(scopes)}")
        if want < 1:
            raise ValueError(f"a reservation needs n >= 1, got {want}")
        keys = [self._key(scope, part) for scope in scopes for part in ("rate", "tat", "blocked")]
        args = [
            "reserve",
            str(want),
            "1" if batched else "0",
            str(max_batch),
            repr(window_fraction),
        ]
        return keys, args

    def _key(self, scope: str, part: str) -> str:
        return f"{self._prefix}:{scope}:{part}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def rate_of(raw: bytes | str) -> float | None:
    """A stored rate: sends per second (0.0 = paused), None = unlimited."""
    text = _text(raw)
    return None if text == _UNLIMITED else float(text)


def grant_of(scopes: Sequence[str], reply: Sequence[bytes | str]) -> Grant:
    """The script's `reserve` reply: a Grant, or RateUnknown / RatePaused."""
    items = [_text(item) for item in reply]
    status, rest = items[0], items[1:]
    if status == "unknown":
        raise RateUnknown([scopes[int(i)] for i in rest])
    if status == "paused":
        raise RatePaused(scopes[int(i)] for i in rest)
    if status == "blocked":
        wait, now, block_end = rest
        return Grant(n=0, wait=float(wait), start=float(block_end), now=float(now))
    n, wait, now, start = rest[:4]
    return Grant(n=int(n), wait=float(wait), start=float(start), now=float(now))
