"""The send gate as one worker process holds it: permits kept alive, and a fence per permit
that every provider request passes right before it starts.

Why a permit alone is not enough: one permit covers a whole batch (up to 500 messages), and a
slow provider keeps starting that batch's requests for seconds. So each permit comes with a
`Fence`, asked with no I/O right before each request's headers are written, and closed as
soon as this process learns that the gate closed. The process learns it by renewing every
permit it holds once per RENEW_SECONDS, in one round trip for all of them (`Gate.renew`),
which also says whether each permit's grants are still open.

The guarantee a stop relies on (see `Gate`): a stop closes the grant, then waits until every
permit taken before is released. A worker releases a permit only when its batch has nothing
left on the wire, and a fence closed by the renewal lets nothing new start. So once the stop
answers, no request of the stopped campaigns starts, however slow the provider is.

Failing closed when Redis goes: a fence is open only until FENCE_SECONDS after the renewal
that last confirmed it was *asked* (not answered), so a worker that cannot reach Redis stops
starting requests within FENCE_SECONDS of its last confirmation. Permits live PERMIT_SECONDS
in Redis without a renewal, longer than FENCE_SECONDS: by the time a silent worker's permit
expires and a stop stops waiting for it, that worker's fences have been closed for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.exceptions import RedisError

from app.control.gate import Gate, Renewal

log = logging.getLogger("wavecast.gate")

# How often a process renews its permits and learns whether their grants closed: the most a
# stop waits for a worker that is sending normally, on top of its requests in flight.
RENEW_SECONDS = 0.05
# A fence stays open this long after the renewal that last confirmed it was asked: the bound
# within which a worker that lost Redis stops starting requests.
FENCE_SECONDS = 1.0
# A permit not renewed for this long expires in Redis (a dead or cut-off worker's permit
# stops holding a stop up). Longer than FENCE_SECONDS, so its fences closed first.
PERMIT_SECONDS = 3.0


class Fence:
    """Whether requests under one permit may still start; `open()` costs no I/O.

    A request that waits to start (for a connection, a stream, flow-control credit) is
    registered with `waiting`: closing the fence cancels it there at once, instead of letting
    it wait until it could start only to be refused, so a stop waits only for the requests
    really on the wire. Its owner turns that cancellation into "not sent" with `stopped`."""

    __slots__ = ("_cancelled", "_waiting", "campaign_id", "closed_because", "permit", "valid_until")

    def __init__(self, campaign_id: uuid.UUID, permit: str, valid_until: float) -> None:
        self.campaign_id = campaign_id
        self.permit = permit
        self.valid_until = valid_until
        self.closed_because: str | None = None
        self._waiting: set[asyncio.Task[Any]] = set()
        self._cancelled: set[asyncio.Task[Any]] = set()

    def open(self) -> bool:
        return self.closed_because is None and time.monotonic() < self.valid_until

    def close(self, because: str) -> None:
        if self.closed_because is not None:
            return
        self.closed_because = because
        waiting, self._waiting = self._waiting, set()
        for task in waiting:
            if not task.done():
                self._cancelled.add(task)
                task.cancel()

    def waiting(self) -> asyncio.Task[Any] | None:
        """Register the current task as waiting to start a request (False-y when the fence
        is closed: then it must not start). Pair with `started` or `stopped`."""
        if not self.open():
            return None
        task = asyncio.current_task()
        if task is not None:
            self._waiting.add(task)
        return task

    def started(self, task: asyncio.Task[Any] | None) -> None:
        """The task's request is leaving now: a close no longer cancels it."""
        if task is not None:
            self._waiting.discard(task)

    def stopped(self, task: asyncio.Task[Any] | None) -> bool:
        """For a task that caught CancelledError: True when this fence cancelled it (the
        cancellation is then taken back; the request counts as not sent)."""
        if task is not None:
            self._waiting.discard(task)
        if task is None or task not in self._cancelled:
            return False
        self._cancelled.discard(task)
        task.uncancel()
        return True

    @property
    def why_closed(self) -> str:
        """Why `open()` is False (meaningless while it is True)."""
        if self.closed_because is not None:
            return self.closed_because
        return UNCONFIRMED


UNCONFIRMED = f"the gate was not confirmed open within {FENCE_SECONDS:.1f}s (Redis unreachable)"


class GateWatch:
    """One per worker process: takes permits and keeps their fences up to date.

    The renewal task starts with the first permit and runs until `aclose`."""

    def __init__(
        self,
        gate: Gate,
        *,
        renew_seconds: float = RENEW_SECONDS,
        fence_seconds: float = FENCE_SECONDS,
        permit_seconds: float = PERMIT_SECONDS,
    ) -> None:
        if not renew_seconds < fence_seconds < permit_seconds:
            raise ValueError("renewals must come well within a fence's and a permit's life")
        self._gate = gate
        self._renew_seconds = renew_seconds
        self._fence_seconds = fence_seconds
        self._permit_seconds = permit_seconds
        self._fences: set[Fence] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @asynccontextmanager
    async def permit(self, campaign_id: uuid.UUID) -> AsyncIterator[Fence]:
        """A permit for one batch, released on exit. Raises `GateClosed` when the gate is
        closed, and Redis errors as they are: a worker that cannot reach the gate does not
        send."""
        asked = time.monotonic()
        permit = await self._gate.acquire(campaign_id, self._permit_seconds)
        async with self.hold(campaign_id, permit, asked) as fence:
            yield fence

    @property
    def permit_seconds(self) -> float:
        """How long a permit lives in Redis without a renewal: what a permit taken elsewhere
        (`app.control.admit`) is given, for `hold` to keep alive."""
        return self._permit_seconds

    @asynccontextmanager
    async def hold(self, campaign_id: uuid.UUID, permit: str, asked: float) -> AsyncIterator[Fence]:
        """Keep a permit already taken (`app.control.admit`, asked at `asked`, monotonic)
        renewed and fenced, as `permit` does, and release it on exit. Enter it as soon as
        the permit is taken: until then nothing renews it, and until it is released every
        stop of its campaign waits for it."""
        fence = Fence(campaign_id, permit, asked + self._fence_seconds)
        self._fences.add(fence)
        self._ensure_running()
        try:
            yield fence
        finally:
            self._fences.discard(fence)
            try:
                await self._gate.release(campaign_id, permit)
            except RedisError:
                log.warning("could not release a gate permit; it expires by itself")

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="gate-watch")
        self._wake.set()

    async def renew_once(self) -> None:
        """Renew every permit held now and update its fence (one Redis round trip). Redis
        errors are raised: nothing is confirmed then, and each fence closes FENCE_SECONDS
        after its last confirmation (`open()` says so by itself; `lapse` cancels what waits
        under it)."""
        fences = list(self._fences)
        if not fences:
            return
        asked = time.monotonic()
        renewals = await self._gate.renew(
            [(f.campaign_id, f.permit) for f in fences], self._permit_seconds
        )
        for fence, renewal in zip(fences, renewals, strict=True):
            if renewal is Renewal.open:
                fence.valid_until = max(fence.valid_until, asked + self._fence_seconds)
            elif renewal is Renewal.closed:
                fence.close("the campaign or every campaign was stopped")
            else:
                fence.close("the permit expired before it was renewed")

    def lapse(self) -> None:
        """Close the fences whose last confirmation is too old (Redis unreachable)."""
        now = time.monotonic()
        for fence in list(self._fences):
            if now >= fence.valid_until:
                fence.close(UNCONFIRMED)

    async def _run(self) -> None:
        failing = False
        while True:
            if not self._fences:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self._renew_seconds)
            try:
                # Bounded, so a Redis that hangs rather than refuses still lets fences lapse.
                async with asyncio.timeout(self._fence_seconds / 2):
                    await self.renew_once()
            except (TimeoutError, RedisError) as exc:
                if not failing:
                    log.warning(
                        "cannot renew gate permits; sends stop within %.1fs",
                        self._fence_seconds,
                        extra={"error": f"{type(exc).__name__}: {exc}"},
                    )
                failing = True
            else:
                failing = False
            self.lapse()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
