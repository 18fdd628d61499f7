"""The throttle against a real Redis (database 15): the Lua script against the pure arithmetic,
and timed runs of concurrent workers — asyncio tasks with their own connections, and two OS
processes — checked against SPEC §5: every 1-second window <= 105 % of the rate, mean >= 95 %."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis

from app.control.throttle import RatePaused, RateUnknown, Throttle
from app.control.throttle_math import (
    GcraState,
    ScopeSnapshot,
    batch_size_for_rate,
    block_in_force,
    grant_size,
    reserve,
)

from .test_throttle_math import busiest_window, window_counts

REDIS_URL = os.environ.get("WAVECAST_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
RATE = 500.0
WANT_EVERYTHING = 1_000_000

Sends = list[tuple[float, int]]  # (wall-clock instant the batch left, sends in it)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"wavecast:test:{uuid.uuid4().hex[:8]}"


async def run_worker(
    prefix: str,
    scopes: Sequence[str],
    stop_at: float,
    sends: Sends,
    *,
    exact: int | None = None,
) -> None:
    """One worker on its own connection: reserve → sleep → "send" until `stop_at`.

    A send is recorded at the instant the throttle scheduled it (`Grant.start`, Redis's
    clock), not when this process woke up: the throttle decides the schedule, and a loaded
    machine's late wake-ups would measure the machine instead of the throttle.
    """
    client = Redis.from_url(REDIS_URL)
    throttle = Throttle(client, prefix=prefix)
    try:
        while time.time() < stop_at:
            if exact is None:
                grant = await throttle.reserve_batch(scopes, WANT_EVERYTHING)
            else:
                grant = await throttle._reserve(scopes, exact, batched=False)
            await asyncio.sleep(grant.wait)
            if grant.n:
                sends.append((grant.start, grant.n))
    finally:
        await client.aclose()


def sent_between(sends: Sends, start: float, end: float) -> int:
    return sum(n for t, n in sends if start <= t < end)


def busiest_window_within(sends: Sends, start: float, end: float) -> int:
    """Busiest 1-second window lying wholly inside [start, end)."""
    inside = [(t, n) for t, n in sends if start <= t < end]
    return max((c for t, c in window_counts(inside) if t + 1.0 <= end), default=0)


# --- the script is the pure arithmetic -------------------------------------------------------


async def snapshot(redis: Redis, prefix: str, scopes: Sequence[str]) -> dict[str, ScopeSnapshot]:
    result = {}
    for scope in scopes:
        raw_rate = await redis.get(f"{prefix}:{scope}:rate")
        tat, tat_rate = await redis.hmget(f"{prefix}:{scope}:tat", ["tat", "rate"])
        blocked = await redis.get(f"{prefix}:{scope}:blocked")
        assert raw_rate is not None
        result[scope] = ScopeSnapshot(
            rate=None if raw_rate in (b"unlimited", "unlimited") else float(raw_rate),
            state=None if tat is None else GcraState(float(tat), float(tat_rate)),
            blocked_until=None if blocked is None else float(blocked),
        )
    return result


@pytest.mark.parametrize(("seed", "decode"), [(1, False), (2, True), (3, False), (4, False)])
async def test_lua_equals_the_pure_reserve(
    redis: Redis, prefix: str, seed: int, decode: bool
) -> None:
    rng = random.Random(seed)
    client = Redis.from_url(REDIS_URL, decode_responses=decode)
    throttle = Throttle(client, prefix=prefix)
    names = ["campaign", "provider", "other"]
    rates: list[float | None] = [None, 0.0, 0.5, 1.0, 3.0, 25.0, 500.0, 20_000.0]
    known: set[str] = set()
    try:
        for _ in range(250):
            roll = rng.random()
            if roll < 0.15:
                scope = rng.choice(names)
                rate = rng.choice([*rates, rng.uniform(0.1, 5000.0)])
                await throttle.set_rate(scope, rate)
                known.add(scope)
            elif roll < 0.22:
                await throttle.block_until(rng.choice(names), rng.choice([0.0, 0.01, 2.0]))
            elif roll < 0.25:
                scope = rng.choice(names)
                await throttle.forget(scope)
                known.discard(scope)
            else:
                scopes = rng.sample(names, k=rng.randint(1, 3))
                want = rng.choice([1, 2, 7, 20, 1000])
                batched = rng.random() < 0.5
                if not set(scopes) <= known:
                    with pytest.raises(RateUnknown) as unknown:
                        await throttle._reserve(scopes, want, batched=batched)
                    assert set(unknown.value.scopes) == set(scopes) - known
                    continue
                before = await snapshot(client, prefix, scopes)
                if any(s.rate == 0 for s in before.values()):
                    with pytest.raises(RatePaused):
                        await throttle._reserve(scopes, want, batched=batched)
                    assert await snapshot(client, prefix, scopes) == before
                    continue
                grant = await throttle._reserve(scopes, want, batched=batched)
                block_end = block_in_force(before, grant.now)
                if batched and block_end is not None:
                    assert (grant.n, grant.start, grant.wait) == (
                        0,
                        block_end,
                        block_end - grant.now,
                    )
                    assert await snapshot(client, prefix, scopes) == before
                    continue
                n = grant_size(want, (s.rate for s in before.values())) if batched else want
                expected = reserve(before, grant.now, n)
                assert (grant.n, grant.start, grant.wait) == (n, expected.start, expected.wait)
                after = await snapshot(client, prefix, scopes)
                for scope in scopes:
                    if before[scope].rate is None:
                        assert after[scope].state == before[scope].state
                    else:
                        assert after[scope].state == expected.states[scope]
    finally:
        await client.aclose()


# --- contract details ------------------------------------------------------------------------


async def test_unknown_rate_fails_closed_and_reserves_nothing(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", RATE)
    with pytest.raises(RateUnknown) as caught:
        await throttle.reserve(["campaign", "provider:fcm"], 5)
    assert caught.value.scopes == ("provider:fcm",)
    assert not await redis.exists(f"{prefix}:campaign:tat")
    with pytest.raises(RateUnknown):
        await throttle.get_rate("provider:fcm")


async def test_rate_zero_pauses_without_reserving(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", 0)
    await throttle.set_rate("provider", 1000)
    assert await throttle.get_rate("campaign") == 0.0
    with pytest.raises(RatePaused) as caught:
        await throttle.reserve_batch(["campaign", "provider"], 10)
    assert caught.value.scopes == ("campaign",)
    assert not await redis.exists(f"{prefix}:provider:tat")
    await throttle.set_rate("campaign", RATE)
    assert await throttle.reserve(["campaign", "provider"], 10) == 0.0


async def test_unlimited_never_waits(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("provider", None)
    assert await throttle.get_rate("provider") is None
    grants = [await throttle.reserve_batch(["provider"], 10_000) for _ in range(5)]
    assert [(g.n, g.wait) for g in grants] == [(500, 0.0)] * 5


async def test_batch_follows_the_tightest_rate(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", 100)
    await throttle.set_rate("provider", 10_000)
    assert (await throttle.reserve_batch(["campaign", "provider"], 1000)).n == 4
    await throttle.set_rate("campaign", 50)
    assert (await throttle.reserve_batch(["campaign", "provider"], 1000)).n == 2


async def test_steady_backlog_is_kept_but_a_raise_cuts_it_to_a_second(
    redis: Redis, prefix: str
) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", 1)
    waits = [await throttle.reserve(["campaign"], 1) for _ in range(5)]
    assert waits[-1] == pytest.approx(4.0, abs=0.05)
    await throttle.reserve(["campaign"], 30)  # ~35 s of sends now queued at 1/s
    await throttle.set_rate("campaign", 1000)
    assert await throttle.reserve(["campaign"], 1) == pytest.approx(1.0, abs=0.05)


async def test_keys_expire_once_they_cannot_matter(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", 10)
    await throttle.reserve(["campaign"], 20)  # tat 2 s ahead
    assert 2900 <= await redis.pttl(f"{prefix}:campaign:tat") <= 3000
    await throttle.block_until("campaign", 5)
    assert 5900 <= await redis.pttl(f"{prefix}:campaign:blocked") <= 6000
    assert await redis.ttl(f"{prefix}:campaign:rate") == -1


async def test_forget_removes_every_key(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", 10)
    await throttle.reserve(["campaign"], 2)
    await throttle.block_until("campaign", 5)
    await throttle.forget("campaign")
    assert await redis.keys(f"{prefix}:*") == []


async def test_a_batched_reservation_is_not_granted_across_a_block(
    redis: Redis, prefix: str
) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("provider", 1000)
    await throttle.block_until("provider", 0.3)
    told = await throttle.reserve_batch(["provider"], 10)
    assert told.n == 0
    assert 0.25 <= told.wait <= 0.3
    assert not await redis.exists(f"{prefix}:provider:tat")
    # Another worker's longer Retry-After arrives while the first one waits.
    await throttle.block_until("provider", 1.0)
    await asyncio.sleep(told.wait)
    again = await throttle.reserve_batch(["provider"], 10)
    assert again.n == 0
    assert 0.6 <= again.wait <= 0.75
    await asyncio.sleep(again.wait)
    granted = await throttle.reserve_batch(["provider"], 10)
    assert (granted.n, granted.wait) == (10, 0.0)


async def test_a_shorter_block_never_shortens_a_longer_one(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    assert await throttle.blocked_for("provider") == 0.0
    await throttle.block_until("provider", 2.0)
    await throttle.block_until("provider", 0.1)
    assert await throttle.blocked_for("provider") == pytest.approx(2.0, abs=0.05)
    await throttle.block_until("provider", 3.0)
    assert await throttle.blocked_for("provider") == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize(("scopes", "n"), [([], 1), (["a", "a"], 1), (["a"], 0), ("campaign", 1)])
async def test_reserve_rejects_malformed_calls(
    redis: Redis, prefix: str, scopes: Sequence[str], n: int
) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("a", 10)
    with pytest.raises((ValueError, TypeError)):
        await throttle.reserve(scopes, n)


@pytest.mark.parametrize("rate", [-1.0, float("nan"), float("inf")])
async def test_set_rate_rejects_nonsense(redis: Redis, prefix: str, rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        await Throttle(redis, prefix=prefix).set_rate("a", rate)


# --- timed runs: concurrent workers ----------------------------------------------------------


async def test_two_workers_hold_the_rate_together(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", RATE)
    batch = batch_size_for_rate(RATE)
    sends: Sends = []
    began = time.time()
    stop_at = began + 3.0
    await asyncio.gather(
        *(run_worker(prefix, ["campaign"], stop_at, sends, exact=batch) for _ in range(2))
    )
    busiest = busiest_window(sends)
    mean = sent_between(sends, began, began + 2.5) / 2.5
    print(f"two tasks: busiest 1-s window {busiest}, mean {mean:.1f}/s at {RATE:.0f}/s")
    assert busiest <= 1.05 * RATE
    assert mean >= 0.95 * RATE


_CHILD = """
import asyncio, json, sys, time
from redis.asyncio import Redis
from app.control.throttle import Throttle

async def main(url, prefix, scope, seconds):
    client = Redis.from_url(url)
    throttle = Throttle(client, prefix=prefix)
    await client.rpush(prefix + ":ready", 1)
    await client.blpop([prefix + ":go"], timeout=30)
    stop_at = time.time() + seconds
    sends = []
    while time.time() < stop_at:
        grant = await throttle.reserve_batch([scope], 1_000_000)
        await asyncio.sleep(grant.wait)
        sends.append((grant.start, grant.n))
    await client.aclose()
    print(json.dumps(sends))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
"""


async def test_two_processes_hold_the_rate_together(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", RATE)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            REDIS_URL,
            prefix,
            "campaign",
            "3.0",
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        # Both processes start sending together, so the run measures contention, not start-up.
        for _ in children:
            assert await redis.blpop([f"{prefix}:ready"], timeout=30) is not None
        began = time.time()
        await redis.rpush(f"{prefix}:go", "go", "go")
        outputs = [await child.communicate() for child in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
    assert all(child.returncode == 0 for child in children)
    per_child = [[(t, n) for t, n in json.loads(out)] for out, _ in outputs]
    assert all(per_child), "both processes must have sent"
    sends = [send for child_sends in per_child for send in child_sends]
    busiest = busiest_window(sends)
    mean = sent_between(sends, began, began + 2.5) / 2.5
    print(f"two processes: busiest 1-s window {busiest}, mean {mean:.1f}/s at {RATE:.0f}/s")
    assert busiest <= 1.05 * RATE
    assert mean >= 0.95 * RATE


async def test_rate_change_mid_run_takes_effect_within_a_second(redis: Redis, prefix: str) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", RATE)
    sends: Sends = []
    began = time.time()
    stop_at = began + 4.3
    workers = asyncio.gather(*(run_worker(prefix, ["campaign"], stop_at, sends) for _ in range(2)))

    await asyncio.sleep(1.0)
    await throttle.set_rate("campaign", 200)
    cut = time.time()
    await asyncio.sleep(2.1)
    await throttle.set_rate("campaign", 400)
    raised = time.time()
    await workers

    assert busiest_window_within(sends, began, cut) <= 1.05 * RATE
    after_cut = busiest_window_within(sends, cut + 1.0, raised)
    assert after_cut <= 1.05 * 200
    assert sent_between(sends, cut + 1.0, cut + 2.0) >= 0.95 * 200
    after_raise = sent_between(sends, raised + 0.1, raised + 1.1)
    print(f"rate change: busiest window after cut {after_cut}/200, after raise {after_raise}/400")
    assert 0.95 * 400 <= after_raise <= 1.05 * 400


async def test_block_makes_every_worker_wait_then_resume_at_the_rate(
    redis: Redis, prefix: str
) -> None:
    throttle = Throttle(redis, prefix=prefix)
    await throttle.set_rate("campaign", RATE)
    await throttle.set_rate("provider", None)
    scopes = ["campaign", "provider"]
    sends: Sends = []
    began = time.time()
    workers = asyncio.gather(*(run_worker(prefix, scopes, began + 2.2, sends) for _ in range(2)))

    await asyncio.sleep(0.6)
    asked = time.time()
    await throttle.block_until("provider", 0.5)
    answered = time.time()
    await throttle.block_until("provider", 0.05)  # a later, shorter Retry-After
    await workers

    # Reservations granted before the block may still leave (a batch or two per worker).
    quiet = sent_between(sends, answered + 0.1, asked + 0.49)
    assert quiet == 0
    resumed = sent_between(sends, asked + 0.5, asked + 1.5)
    assert 0.95 * RATE <= resumed <= 1.05 * RATE
    assert busiest_window(sends) <= 1.05 * RATE
