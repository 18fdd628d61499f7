"""The frequency-cap store against a real Redis: the Lua script against the pure `admits`
model on replayed histories, campaigns racing for a device's last slot on separate
connections, retries, slots given back, and the keys' expiry."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from app.control.caps import PREFIX, CapStore
from app.timing.caps import FrequencyCap, admits

REDIS_URL = os.environ.get("WAVECAST_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
T0 = 1_780_000_000.0  # epoch seconds, June 2026
DAY_CAP = FrequencyCap(2, 86400)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"wavecast:test:cap:{uuid.uuid4().hex[:8]}"
    yield name
    keys = [key async for key in redis.scan_iter(match=f"{name}:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def store(redis: Redis, prefix: str) -> CapStore:
    return CapStore(redis, prefix=prefix)


def devices(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


async def slots(redis: Redis, store: CapStore, device: str) -> dict[str, float]:
    entries = await redis.zrange(store.key(device), 0, -1, withscores=True)
    return {(m.decode() if isinstance(m, bytes) else m): s for m, s in entries}


# --- the script is the model ----------------------------------------------------------------


class Model:
    """The store as plain Python: per device, campaign → when it took its slot. Decisions are
    `admits`; trimming is what the script does to its sorted sets."""

    def __init__(self) -> None:
        self.slots: dict[str, dict[str, float]] = {}

    def take(self, device: str, campaign: str, cap: FrequencyCap, now: float) -> bool:
        held = self.slots.setdefault(device, {})
        for other, at in list(held.items()):
            if at <= now - cap.window_seconds:
                del held[other]
        if campaign in held:
            return True
        history = [datetime.fromtimestamp(at, UTC) for at in held.values()]
        if not admits(history, datetime.fromtimestamp(now, UTC), cap):
            return False
        held[campaign] = now
        return True

    def give_back(self, device: str, campaign: str) -> bool:
        return self.slots.get(device, {}).pop(campaign, None) is not None


@pytest.mark.parametrize(("seed", "decode"), [(1, False), (2, True), (3, False), (4, False)])
async def test_lua_agrees_with_admits(redis: Redis, prefix: str, seed: int, decode: bool) -> None:
    rng = random.Random(seed)
    client = Redis.from_url(REDIS_URL, decode_responses=decode)
    store = CapStore(client, prefix=prefix)
    model = Model()
    # Windows of minutes on a simulated clock: Redis's own expiry (real time) never fires
    # during the test, so the windows are the script's arithmetic alone.
    cap = FrequencyCap(rng.randint(1, 3), rng.choice([60, 300, 3600]))
    pool = devices(4)
    campaigns = [f"campaign-{i}" for i in range(6)]
    now = T0
    refused = admitted = 0
    try:
        for _ in range(300):
            # Mostly forward, by up to half a window; sometimes a little back (a worker whose
            # clock lags); times on exact binary fractions so both sides compute alike.
            now += rng.choice([0.0, 0.25, 1.0, cap.window_seconds / 7, cap.window_seconds / 2])
            if rng.random() < 0.1:
                now -= rng.choice([0.5, 3.0])
            batch = rng.sample(pool, rng.randint(1, len(pool)))
            campaign = rng.choice(campaigns)
            if rng.random() < 0.1:
                got = await store.give_back(batch, campaign)
                assert got == [model.give_back(d, campaign) for d in batch]
            else:
                got = await store.take(batch, campaign, cap, now)
                assert got == [model.take(d, campaign, cap, now) for d in batch], (cap, now)
                admitted += sum(got)
                refused += len(got) - sum(got)
            for device in batch:
                assert await slots(redis, store, device) == model.slots.get(device, {})
    finally:
        await client.aclose()
    # The sequence exercised both answers.
    assert admitted > 20 and refused > 20


async def test_one_call_for_a_batch(store: CapStore, redis: Redis) -> None:
    a, b, c = devices(3)
    cap = FrequencyCap(1, 3600)
    assert await store.take([a], "first", cap, T0) == [True]
    # Capped, fresh, and the same device twice in one batch (a retry within the batch).
    assert await store.take([a, b, c, b], "second", cap, T0 + 1) == [False, True, True, True]
    assert await slots(redis, store, b) == {"second": T0 + 1}
    assert await store.take([], "second", cap, T0 + 2) == []


async def test_the_window_is_half_open(store: CapStore) -> None:
    (device,) = devices(1)
    cap = FrequencyCap(1, 100)
    assert await store.take([device], "a", cap, T0) == [True]
    assert await store.take([device], "b", cap, T0 + 99.75) == [False]
    # Exactly a window later, a's slot no longer counts.
    assert await store.take([device], "b", cap, T0 + 100) == [True]


async def test_a_slot_taken_ahead_of_now_counts(store: CapStore) -> None:
    (device,) = devices(1)
    cap = FrequencyCap(1, 100)
    assert await store.take([device], "ahead", cap, T0 + 5) == [True]
    assert await store.take([device], "behind", cap, T0) == [False]


# --- races ----------------------------------------------------------------------------------


async def test_two_campaigns_racing_for_the_last_slot(redis: Redis, prefix: str) -> None:
    others = [Redis.from_url(REDIS_URL) for _ in range(2)]
    left, right = (CapStore(client, prefix=prefix) for client in others)
    pool = devices(200)
    try:
        # One slot of two already used by an earlier campaign.
        assert await left.take(pool, "earlier", DAY_CAP, T0) == [True] * len(pool)
        for device in pool:
            wins = await asyncio.gather(
                left.take([device], "left", DAY_CAP, T0 + 10),
                right.take([device], "right", DAY_CAP, T0 + 10),
            )
            assert sorted(w for (w,) in wins) == [False, True], device
            assert len(await slots(redis, left, device)) == 2
    finally:
        for client in others:
            await client.aclose()


async def test_many_campaigns_racing_over_whole_batches(redis: Redis, prefix: str) -> None:
    cap = FrequencyCap(3, 3600)
    clients = [Redis.from_url(REDIS_URL) for _ in range(8)]
    stores = [CapStore(client, prefix=prefix) for client in clients]
    pool = devices(300)
    try:
        # Each campaign takes the batch in chunks, in its own order, all at once.
        async def campaign(i: int) -> dict[str, bool]:
            order = random.Random(i).sample(pool, len(pool))
            won: dict[str, bool] = {}
            for start in range(0, len(order), 50):
                chunk = order[start : start + 50]
                won.update(zip(chunk, await stores[i].take(chunk, f"c{i}", cap, T0), strict=True))
            return won

        results = await asyncio.gather(*(campaign(i) for i in range(len(stores))))
        for device in pool:
            winners = {f"c{i}" for i, won in enumerate(results) if won[device]}
            assert len(winners) == cap.count, device
            assert set(await slots(redis, stores[0], device)) == winners
    finally:
        for client in clients:
            await client.aclose()


# --- retries and give-backs -----------------------------------------------------------------


async def test_a_retry_takes_no_second_slot(store: CapStore, redis: Redis) -> None:
    (device,) = devices(1)
    cap = FrequencyCap(2, 3600)
    assert await store.take([device], "a", cap, T0) == [True]
    assert await store.take([device], "b", cap, T0 + 1) == [True]
    # Full: a new campaign is refused, but a and b are admitted again, slots unchanged.
    assert await store.take([device], "c", cap, T0 + 2) == [False]
    assert await store.take([device], "a", cap, T0 + 3) == [True]
    assert await store.take([device], "b", cap, T0 + 3599) == [True]
    assert await slots(redis, store, device) == {"a": T0, "b": T0 + 1}
    # Once a's slot has left the window, a retry of a is a new take, at the new instant.
    assert await store.take([device], "a", cap, T0 + 3600) == [True]
    assert await slots(redis, store, device) == {"a": T0 + 3600, "b": T0 + 1}


async def test_give_back_frees_the_slot(store: CapStore, redis: Redis) -> None:
    first, second = devices(2)
    cap = FrequencyCap(1, 3600)
    assert await store.take([first, second], "stopped", cap, T0) == [True, True]
    assert await store.take([first, second], "next", cap, T0 + 1) == [False, False]
    assert await store.give_back([first], "stopped") == [True]
    assert await store.give_back([first, second], "never-took") == [False, False]
    assert await store.take([first, second], "next", cap, T0 + 2) == [True, False]
    assert await slots(redis, store, first) == {"next": T0 + 2}
    # Giving back the last slot leaves no key behind.
    assert await store.give_back([first], "next") == [True]
    assert not await redis.exists(store.key(first))
    assert await store.give_back([], "next") == []


# --- keys and memory ------------------------------------------------------------------------


async def test_keys_expire_a_window_after_the_newest_slot(store: CapStore, redis: Redis) -> None:
    (device,) = devices(1)
    key = store.key(device)
    assert await store.take([device], "a", FrequencyCap(2, 600), T0) == [True]
    assert 599_000 < await redis.pttl(key) <= 600_000
    # A worker whose clock lags 100 s: the slot taken at T0 counts for it for 700 s more.
    assert await store.take([device], "b", FrequencyCap(2, 600), T0 - 100) == [True]
    assert 699_000 < await redis.pttl(key) <= 700_000
    # A campaign with a shorter window never cuts the expiry short.
    assert await store.take([device], "c", FrequencyCap(5, 60), T0) == [True]
    assert 699_000 < await redis.pttl(key) <= 700_000
    # A refusal leaves the expiry alone.
    assert await store.take([device], "d", FrequencyCap(1, 600), T0) == [False]
    assert 698_000 < await redis.pttl(key) <= 700_000


async def test_a_capped_device_holds_at_most_count_slots(store: CapStore, redis: Redis) -> None:
    (device,) = devices(1)
    cap = FrequencyCap(3, 60)
    for i in range(50):
        await store.take([device], f"c{i}", cap, T0 + 7 * i)
        assert await redis.zcard(store.key(device)) <= cap.count


async def test_default_key_layout(redis: Redis) -> None:
    (device,) = devices(1)
    store = CapStore(redis)
    assert store.key(device) == f"{PREFIX}:{device}" == f"wavecast:cap:{device}"
    try:
        assert await store.take([device], "a", DAY_CAP, T0) == [True]
        assert await redis.type(f"wavecast:cap:{device}") == b"zset"
    finally:
        await redis.delete(f"wavecast:cap:{device}")


async def test_refuses_bad_arguments(store: CapStore) -> None:
    with pytest.raises(TypeError, match="not one string"):
        await store.take("device", "a", DAY_CAP, T0)
    with pytest.raises(ValueError, match="finite"):
        await store.take(devices(1), "a", DAY_CAP, float("nan"))
