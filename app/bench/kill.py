"""Kill latency: kill a sending campaign at a random moment, through a real API process.

Set-up: the APNs protocol fake (`wavecast fake apns`) answering every push after a fixed
latency (default 100 ms, so requests are always in flight), two real `wavecast worker`
processes sending through aioapns, and a real `wavecast api` process (uvicorn, one process).

Each trial starts a fresh campaign (one 100 % wave, throttle `--rate`), waits for its first
request to reach the fake, sleeps a random 0.2-2 s, then calls
``POST /v1/campaigns/{id}/kill`` (key with the `kill` scope, a reason) and notes
``time.monotonic()`` when the answer arrived. Two seconds later it reads the fake's records
of that trial: the fake stamps each request with ``time.monotonic()`` when its headers
arrived, the same system-wide clock, so both are on one time line. A request *started after
the answer* arrived later than that instant (target 0, summed over all trials); a request's
*end* is its arrival plus the latency the fake added; the *lag* is from the answer to the end
of the last request started before it (0 when nothing was in flight: the API waits for the
permits of in-flight sends before it answers). p50/p99 of the lag over the trials (nearest
rank, so with 10 trials p99 is the worst trial); target p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import httpx

from app.auth.models import Scope
from app.bench import stack
from app.bench.report import Figure, at_most, median, percentile, reported
from app.bench.timing import KillTrial, kill_trial
from app.runtime import Runtime
from app.settings import Settings

DESCRIPTION = "kill latency: random-moment kills through the API, fake's own records"
WORKERS = 2
TARGET_LAG_SECONDS = 0.250
SETTLE_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--rate", type=int, default=500, help="campaign throttle, msg/s")
    parser.add_argument("--latency", type=float, default=0.1, help="fake's answer latency, s")
    parser.add_argument("--provider", choices=("apns", "fcm"), default="apns")
    parser.add_argument("--seed", type=int, default=None, help="seed for the kill moments")


async def _first_send(fake: stack.Fake, since: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not fake.sends(since):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no request reached the fake within {within:.0f}s")
        await asyncio.sleep(0.02)


async def run(settings: Settings, args: argparse.Namespace) -> list[tuple[KillTrial, float]]:
    """Per trial: what the fake saw, and how long the kill call itself took (s)."""
    chance = random.Random(args.seed)
    work = stack.workdir("kill")
    runtime = await Runtime.start(settings)
    trials: list[tuple[KillTrial, float]] = []
    try:
        await stack.empty_stores(runtime)
        platform = "ios" if args.provider == "apns" else "android"
        # Enough that no campaign finishes before its kill (at most 2 s after its first send).
        await stack.add_devices(runtime, int(args.rate * 4), tag="kill", platform=platform)
        key = await stack.api_key(runtime, [Scope.kill, Scope.campaigns_read])
        with (
            stack.fake(args.provider, work) as fake,
            stack.workers(settings, WORKERS, work, **fake.env),
            stack.api_process(settings, work) as url,
        ):
            fake.add_rule(latency=args.latency)
            await stack.workers_alive(runtime.redis, WORKERS)
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
                # A warm API, as in production: the first request of a fresh process pays for
                # its imports and its first database connection.
                (await api.get("/v1/campaigns", params={"limit": 1})).raise_for_status()
                for _ in range(args.trials):
                    since = fake.last_seq()
                    campaign = await stack.start_campaign(runtime, tag="kill", per_second=args.rate)
                    await _first_send(fake, since)
                    await asyncio.sleep(chance.uniform(0.2, 2.0))
                    asked = time.monotonic()
                    answer = await api.post(
                        f"/v1/campaigns/{campaign}/kill", json={"reason": "kill-latency benchmark"}
                    )
                    answered = time.monotonic()
                    if answer.status_code != 200:
                        raise RuntimeError(f"kill answered {answer.status_code}: {answer.text}")
                    await asyncio.sleep(SETTLE_SECONDS)
                    trials.append((kill_trial(fake.sends(since), answered), answered - asked))
    finally:
        await runtime.close()
    return trials


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    trials = asyncio.run(run(settings, args))
    lags = [t.lag * 1000 for t, _ in trials]
    calls = [call * 1000 for _, call in trials]
    n = f"{len(trials)} trials, {args.provider}, {args.latency * 1000:.0f} ms fake latency"
    return [
        at_most(
            "kill",
            f"requests started after the kill answer ({n})",
            sum(t.started_after for t, _ in trials),
            "req",
            0,
        ),
        reported("kill", "answer -> last in-flight request done, p50", percentile(lags, 50), "ms"),
        at_most(
            "kill",
            "answer -> last in-flight request done, p99",
            percentile(lags, 99),
            "ms",
            TARGET_LAG_SECONDS * 1000,
        ),
        reported("kill", "kill call (request -> answer), p50", percentile(calls, 50), "ms"),
        reported("kill", "kill call (request -> answer), p99", percentile(calls, 99), "ms"),
        reported(
            "kill",
            "requests in flight at the answer, median",
            median(t.in_flight_at_answer for t, _ in trials),
            "req",
        ),
        reported(
            "kill",
            "requests sent before the kill, median",
            median(t.started_before for t, _ in trials),
            "req",
        ),
    ]
