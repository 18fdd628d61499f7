"""Rate limit leases: an API process takes several requests' worth of a bucket from Redis at
once, and the limit shared by every process still holds (`app.ops.ratelimit`)."""

from __future__ import annotations

import asyncio
import time

from hypothesis import example, given
from hypothesis import strategies as st

from app.ops.ratelimit import LEASE_SECONDS, Limiter
from app.ops.ratelimit_math import SLACK, gcra, take
from app.runtime import Runtime


@given(
    interval=st.floats(0.001, 10),
    burst=st.integers(1, 50),
    tat_ahead=st.floats(-5, 50),
    wanted=st.integers(1, 60),
)
# Found by a run: the lease refused the third request that three single steps allowed, its
# turn exactly on the slack's edge.
@example(interval=1.2117158757515072, burst=3, tat_ahead=1e-06, wanted=3)
def test_taking_n_is_n_single_requests_at_once(
    interval: float, burst: int, tat_ahead: float, wanted: int
) -> None:
    now = 1000.0
    tat = now + tat_ahead
    granted, new_tat, retry_after = take(tat, now, interval, burst, wanted)
    single, allowed, refused = tat, 0, None
    for _ in range(wanted):
        decision = gcra(single, now, interval, burst)
        if not decision.allowed:
            refused = decision
            break
        single, allowed = decision.tat, allowed + 1
    if granted != allowed:
        # Float rounding at the boundary: the single steps add the interval one at a time,
        # the lease multiplies. They may differ, either way, by the one request whose turn
        # falls on the slack's edge (`now` + SLACK, to rounding), never by more.
        assert abs(granted - allowed) == 1
        k = min(granted, allowed) + 1
        turn = max(tat, now) + k * interval - interval * burst
        assert abs(turn - (now + SLACK)) <= 1e-9
        if granted > allowed:
            assert refused is not None and refused.retry_after <= 2 * SLACK
        return
    assert granted == allowed
    assert abs(new_tat - single) <= 1e-6 * max(1.0, abs(single))
    if granted == 0:
        assert new_tat == tat
        assert retry_after > 0
        assert take(tat, now + retry_after + 1e-9, interval, burst, 1)[0] == 1


async def _hammer(limiter: Limiter, bucket: str, until: float, admitted: list[float]) -> None:
    while time.monotonic() < until:
        if await limiter.check(bucket) is None:
            admitted.append(time.monotonic())
        else:
            await asyncio.sleep(0.002)


async def test_processes_sharing_a_bucket_never_admit_more_than_the_limit(db: Runtime) -> None:
    # Two limiters on one Redis are two API processes; eight clients each, all on one key.
    rate, seconds = 200.0, 1.5
    processes = [Limiter(db.redis, rate), Limiter(db.redis, rate)]
    assert processes[0].max_lease == 10  # leases are in use at this rate
    admitted: list[list[float]] = [[], []]
    start = time.monotonic()
    await asyncio.gather(
        *(
            _hammer(limiter, "key:shared", start + seconds, admitted[n])
            for n, limiter in enumerate(processes)
            for _ in range(8)
        )
    )
    elapsed = time.monotonic() - start
    total = sum(map(len, admitted))
    burst = processes[0].burst
    # The bound the module states: burst + rate x (T + LEASE_SECONDS).
    assert total <= burst + rate * (elapsed + LEASE_SECONDS)
    # And the limit is not badly undercounted: the burst and most of the rate got through
    # (each process holds at most one lease unused).
    assert total >= burst + rate * seconds * 0.5 - 2 * processes[0].max_lease
    assert all(admitted)  # both processes were served


async def test_a_busy_key_amortises_round_trips_and_a_sparse_one_takes_one_at_a_time(
    db: Runtime,
) -> None:
    limiter = Limiter(db.redis, 100_000)
    for _ in range(400):
        assert await limiter.check("key:busy") is None
    assert limiter.round_trips < 40

    limiter = Limiter(db.redis, 200)  # interval 5 ms, leases of up to 10
    for _ in range(3):
        assert await limiter.check("key:sparse") is None
        await asyncio.sleep(LEASE_SECONDS * 1.5)
    assert limiter.round_trips == 3
    # Each took one request's worth: the bucket's TAT is one interval ahead of the last one.
    tat = float(await db.redis.get("wavecast:ratelimit:key:sparse") or 0)
    now_s, now_us = await db.redis.time()
    assert tat - (now_s + now_us / 1e6) <= limiter.interval


async def test_a_refused_request_is_refused_with_leases_too(db: Runtime) -> None:
    # Rate 100/s: burst 200, leases of up to 5; 200 at once go through, then refusals.
    limiter = Limiter(db.redis, 100)
    answers = [await limiter.check("key:full") for _ in range(220)]
    allowed = sum(a is None for a in answers)
    # Slow machines refill a little while the loop runs (a request per 10 ms).
    assert 200 <= allowed < 220
    refused = [a for a in answers if a is not None]
    assert refused and all(0 < a <= 0.1 for a in refused)
