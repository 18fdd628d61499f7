"""Telling every worker, through Redis, what the database decided.

PostgreSQL decides; Redis carries the decision to every worker fast. Grants are written
after the commit (a grant must never run ahead of the truth it reflects), and a stop is
answered only after the gate has drained the permits taken before it closed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.campaigns.models import Campaign
from app.campaigns.state import CampaignStatus, is_terminal
from app.control.admit import Admit
from app.control.caps import CapStore
from app.control.fence import FENCE_SECONDS, GateWatch
from app.control.gate import Gate
from app.control.throttle import Throttle
from app.errors import Problem
from app.killswitch.models import KillSwitch

STOP_DRAIN_SECONDS = 5.0
FULL_SYNC_KEY = "wavecast:grants:full-sync"


# Rates are paced this far below what they cap: a throttle of R sends at most R in any
# second only if batches leave when their tokens are due, and a worker sharing two cores
# with others sends a batch up to tens of milliseconds late now and then, where it bunches
# with the punctual ones (two batches in one 1 s window: 108 % of R). 3 % of a second is
# the budget for that lateness; the mean stays at 97 % of R.
PACE = 0.97


def paced(per_second: float) -> float:
    """The rate the throttle enforces for a configured maximum of `per_second`."""
    return per_second * PACE


def campaign_rate(campaign: Campaign) -> float:
    """The rate the throttle enforces for a campaign: its paced `throttle.per_second`, or the
    opens budget's effective rate when that is lower (app.rollout.opens_control). A budget
    with no effective rate yet allows the budget itself, as if every send were opened at
    once: nothing can then exceed it before the engine's first estimate."""
    rate = paced(float(campaign.throttle_per_second))
    if campaign.max_opens_per_second is None:
        return rate
    if campaign.effective_per_second is None:
        return min(rate, float(campaign.max_opens_per_second))
    return min(rate, campaign.effective_per_second)


def throttle_scope(campaign_id: uuid.UUID) -> str:
    return f"campaign:{campaign_id}"


def provider_scope(provider: str) -> str:
    return f"provider:{provider}"


class StopNotConfirmed(Problem):
    """The stop is committed in the database, but Redis could not be told."""

    def __init__(self, what: str) -> None:
        super().__init__(
            503,
            "Stop recorded, not yet confirmed",
            f"{what} is recorded in the database, but Redis is unreachable, so it could not be "
            "confirmed that no worker is sending. Workers that cannot reach Redis send nothing, "
            "and every worker re-reads the database before each batch; retry this call to "
            "confirm once Redis is back.",
            headers={"Retry-After": "2"},
        )


class StopNotDrained(Problem):
    """The stop is committed and the gate closed, but sends under permits taken before it
    had not finished when the answer was due."""

    def __init__(self, what: str, held: int) -> None:
        super().__init__(
            503,
            "Stop recorded, not yet confirmed",
            f"{what} is recorded and the send gate is closed, but {held} batch(es) of provider "
            f"requests taken before the stop had not finished within {STOP_DRAIN_SECONDS:.0f}s "
            "(a slow provider's requests still on the wire, or a worker that has not yet seen "
            "the stop; a worker that cannot reach Redis starts nothing after "
            f"{FENCE_SECONDS:.0f}s). Retry this call to confirm: it answers 200 once nothing "
            "is left in flight.",
            headers={"Retry-After": "1"},
        )


class Control:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.gate = Gate(redis)
        self.throttle = Throttle(redis)
        # A batch's grants, throttle reservation and permit, in one round trip.
        self.admit = Admit(redis, self.throttle)
        # Frequency caps: each device's slots, shared by every campaign and worker.
        self.caps = CapStore(redis)
        # The worker's side of the gate: permits kept alive and fenced (idle in the API).
        self.watch = GateWatch(self.gate)

    async def publish_campaign(self, campaign: Campaign) -> None:
        """Write the campaign's grant (and rate) as the database has them now."""
        status = CampaignStatus(campaign.status)
        if not is_terminal(status):
            await self.throttle.set_rate(throttle_scope(campaign.id), campaign_rate(campaign))
        await self.gate.set_campaign(
            campaign.id,
            status is CampaignStatus.running,
            campaign.control_version,
            terminal=is_terminal(status),
        )

    async def claim_full_sync(self, every_seconds: int) -> bool:
        """True for one caller per `every_seconds` across all workers, and for the first
        caller after Redis lost its data (the marker goes with it)."""
        return bool(await self._redis.set(FULL_SYNC_KEY, "1", nx=True, ex=every_seconds))

    async def publish_switch(self, switch: KillSwitch) -> None:
        await self.gate.set_global(not switch.engaged, switch.version)

    async def publish_switch_or_refuse(self, switch: KillSwitch, *, what: str) -> None:
        """`publish_switch` for a stop: raises StopNotConfirmed when Redis is unreachable."""
        try:
            await self.publish_switch(switch)
        except RedisError:
            raise StopNotConfirmed(what) from None

    async def stop(
        self, campaigns: Iterable[Campaign], *, everything: bool = False, what: str = "the stop"
    ) -> int:
        """Close the grants and wait until the permits taken before have been released;
        returns 0 then. Raises StopNotConfirmed when Redis cannot be reached, and
        StopNotDrained when permits are still held after STOP_DRAIN_SECONDS: only an answer
        that returns means that no provider request for these campaigns starts any more."""
        try:
            held = await self._stop(list(campaigns), everything=everything)
        except RedisError:
            raise StopNotConfirmed(what) from None
        if held:
            raise StopNotDrained(what, held)
        return held

    async def _stop(self, targets: list[Campaign], *, everything: bool) -> int:
        for campaign in targets:
            await self.publish_campaign(campaign)
        if everything:
            return await self.gate.drain(None, within=STOP_DRAIN_SECONDS)
        held = 0
        for campaign in targets:
            held += await self.gate.drain(campaign.id, within=STOP_DRAIN_SECONDS)
        return held
