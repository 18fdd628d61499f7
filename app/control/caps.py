"""Frequency caps held in Redis: a device receives at most ``cap.count`` live campaigns in any
rolling window, counted across campaigns and workers.

Every take goes through one Lua script (``caps.lua``), one EVALSHA per batch of devices, so
two campaigns racing for a device's last slot, on any workers, cannot both take it. The
decision is ``app.timing.caps.admits`` (the tests hold the script to it).

How the sender is meant to use it: ``take`` the slots of a batch just before sending it and
send only to the devices admitted; ``give_back`` the slots of devices whose send did not leave
(stopped, expired, refused before the provider saw it). A retry of the same campaign for the
same device is admitted again without taking a second slot, so a job that runs twice is safe.

Memory: one sorted set per capped device, at most ``cap.count`` small entries, expiring a
window after its newest slot. Campaigns with different windows share a device's set: one with
a shorter window trims slots a longer one would still count (the expiry is never shortened),
so a deployment should use one window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from redis.asyncio import Redis

from app.timing.caps import FrequencyCap

__all__ = ["PREFIX", "CapStore"]

PREFIX: Final = "wavecast:cap"

_LUA = Path(__file__).with_name("caps.lua").read_text(encoding="utf-8")


class CapStore:
    """Frequency-cap slots per device, shared through Redis. ``now`` is the caller's clock,
    epoch seconds (``datetime.timestamp()``); the client may or may not decode responses."""

    def __init__(self, redis: Redis, *, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._prefix = prefix
        self._script = redis.register_script(_LUA)

    async def take(
        self, device_ids: Sequence[str], campaign_id: str, cap: FrequencyCap, now: float
    ) -> list[bool]:
        """For each device, in order: whether ``campaign_id`` may send to it now. True takes a
        slot (or finds the one this campaign already holds within the window); False takes
        nothing: the device already had ``cap.count`` other campaigns within the window."""
        keys = self._keys(device_ids)
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite epoch in seconds, got {now}")
        if not keys:
            return []
        reply = await self._script(
            keys=keys,
            args=["take", campaign_id, str(cap.count), str(cap.window_seconds), repr(float(now))],
        )
        return [int(item) == 1 for item in reply]

    async def give_back(self, device_ids: Sequence[str], campaign_id: str) -> list[bool]:
        """Release ``campaign_id``'s slot on each device, for sends that did not happen; says,
        per device, whether there was one. Only for a campaign none of whose sends reached the
        device within the window: a slot given back is free for another campaign."""
        keys = self._keys(device_ids)
        if not keys:
            return []
        reply = await self._script(keys=keys, args=["give_back", campaign_id])
        return [int(item) == 1 for item in reply]

    def key(self, device_id: str) -> str:
        return f"{self._prefix}:{device_id}"

    def _keys(self, device_ids: Sequence[str]) -> list[str]:
        if isinstance(device_ids, str):
            raise TypeError("device_ids must be a sequence of device ids, not one string")
        return [self.key(device_id) for device_id in device_ids]
