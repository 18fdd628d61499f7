"""Kill latency: stop a sending campaign at a random moment, through a real API process.

Set-up per scenario: a protocol fake (`wavecast fake apns|fcm`) answering every push after a
fixed latency, two real `wavecast worker` processes sending through the real client library
(aioapns, firebase-admin), and a real `wavecast api` process (uvicorn, one process).

Scenarios (all by default; `--provider`/`--latency`/`--rate`/`--stop` pick one):
- today's: APNs, 100 ms latency, 500 msg/s, campaign kill;
- slow providers: FCM and APNs at 3 s latency and 10,000 msg/s, campaign kill, and FCM with
  the global kill switch. A slow provider keeps one batch's requests starting for seconds:
  this is where a stop that waited only for its permits answered while requests kept going.

Each trial starts a fresh campaign (one 100 % wave), waits for its first request to reach the
fake, sleeps a random 0.2-2 s, then stops it (``POST /v1/campaigns/{id}/kill`` with a `kill`
key, or ``POST /v1/kill-switch``). A 503 ("stop recorded, not yet confirmed": requests taken
before the stop still on the wire after the API's wait) is asked again until the stop answers
200; the trial notes ``time.monotonic()`` when that 200 arrived. Two seconds later it reads
the fake's records: the fake stamps each request with ``time.monotonic()`` when its headers
arrived, the same system-wide clock. A request *started after the answer* arrived later than
the 200 (target 0, summed over all trials); the *lag* is from the 200 to the end of the last
request started before it (its arrival plus the fake's latency). p50/p99 of the lag over the
trials (nearest rank, so with 10 trials p99 is the worst trial); target p99 <= 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass

import httpx

from app.auth.models import Scope
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_most, median, percentile, reported
from wavecast_tools.bench.timing import KillTrial, kill_trial

DESCRIPTION = "kill latency: random-moment stops through the API, slow providers, fake's records"
WORKERS = 2
TARGET_LAG_SECONDS = 0.250
SETTLE_SECONDS = 2.0
# How long a trial asks again after "not yet confirmed" before it gives up.
CONFIRM_WITHIN_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Scenario:
    provider: str
    latency: float
    rate: int
    stop: str  # "campaign" (kill one campaign) or "global" (the kill switch)

    @property
    def label(self) -> str:
        what = "kill" if self.stop == "campaign" else "kill switch"
        return f"{self.provider} {self.latency * 1000:.0f} ms {self.rate}/s {what}"


DEFAULT_SCENARIOS = (
    Scenario("apns", 0.1, 500, "campaign"),
    Scenario("fcm", 3.0, 10_000, "campaign"),
    Scenario("apns", 3.0, 10_000, "campaign"),
    Scenario("fcm", 3.0, 10_000, "global"),
)


@dataclass(frozen=True, slots=True)
class Trial:
    seen: KillTrial
    call: float
    """Seconds from the first stop request to its 200."""
    unconfirmed: int
    """503 answers before the 200."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=5, help="trials per scenario")
    parser.add_argument("--rate", type=int, default=None, help="campaign throttle, msg/s")
    parser.add_argument("--latency", type=float, default=None, help="fake's answer latency, s")
    parser.add_argument("--provider", choices=("apns", "fcm"), default=None)
    parser.add_argument("--stop", choices=("campaign", "global"), default=None)
    parser.add_argument("--seed", type=int, default=None, help="seed for the kill moments")


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Every default scenario, or the one the options describe."""
    if args.provider is None and args.latency is None and args.rate is None and args.stop is None:
        return list(DEFAULT_SCENARIOS)
    return [
        Scenario(
            args.provider or "apns",
            0.1 if args.latency is None else args.latency,
            500 if args.rate is None else args.rate,
            args.stop or "campaign",
        )
    ]


async def _first_send(fake: stack.Fake, since: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not fake.sends(since):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no request reached the fake within {within:.0f}s")
        await asyncio.sleep(0.02)


async def _confirmed(api: httpx.AsyncClient, path: str, body: dict[str, str]) -> tuple[float, int]:
    """Ask until the stop answers 200; (monotonic instant of the 200, 503s before it)."""
    deadline = time.monotonic() + CONFIRM_WITHIN_SECONDS
    unconfirmed = 0
    while True:
        answer = await api.post(path, json=body)
        if answer.status_code == 200:
            return time.monotonic(), unconfirmed
        if answer.status_code != 503 or time.monotonic() > deadline:
            raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text}")
        unconfirmed += 1


async def run_one(
    settings: Settings, scenario: Scenario, trials: int, chance: random.Random
) -> list[Trial]:
    work = stack.workdir("kill")
    runtime = await Runtime.start(settings)
    out: list[Trial] = []
    try:
        await stack.empty_stores(runtime)
        platform = "ios" if scenario.provider == "apns" else "android"
        # Enough that no campaign finishes before its kill (at most 2 s after its first send).
        await stack.add_devices(runtime, int(scenario.rate * 4), tag="kill", platform=platform)
        key = await stack.api_key(runtime, [Scope.admin])
        with (
            stack.fake(scenario.provider, work) as fake,
            stack.workers(settings, WORKERS, work, **fake.env),
            stack.api_process(settings, work) as url,
        ):
            fake.add_rule(latency=scenario.latency)
            await stack.workers_alive(runtime.redis, WORKERS)
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as api:
                # A warm API, as in production: the first request of a fresh process pays for
                # its imports and its first database connection.
                (await api.get("/v1/campaigns", params={"limit": 1})).raise_for_status()
                for _ in range(trials):
                    since = fake.last_seq()
                    campaign = await stack.start_campaign(
                        runtime, tag="kill", per_second=scenario.rate
                    )
                    await _first_send(fake, since)
                    await asyncio.sleep(chance.uniform(0.2, 2.0))
                    reason = {"reason": "kill-latency benchmark"}
                    path = (
                        f"/v1/campaigns/{campaign}/kill"
                        if scenario.stop == "campaign"
                        else "/v1/kill-switch"
                    )
                    asked = time.monotonic()
                    answered, unconfirmed = await _confirmed(api, path, reason)
                    await asyncio.sleep(SETTLE_SECONDS)
                    seen = kill_trial(fake.sends(since), answered)
                    out.append(Trial(seen, answered - asked, unconfirmed))
                    if scenario.stop == "global":
                        released = await api.post("/v1/kill-switch/release", json=reason)
                        released.raise_for_status()
    finally:
        await runtime.close()
    return out


async def run(settings: Settings, args: argparse.Namespace) -> list[tuple[Scenario, list[Trial]]]:
    chance = random.Random(args.seed)
    return [
        (scenario, await run_one(settings, scenario, args.trials, chance))
        for scenario in scenarios(args)
    ]


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    figures: list[Figure] = []
    for scenario, trials in asyncio.run(run(settings, args)):
        figures += _figures(scenario, trials)
    return figures


def _figures(scenario: Scenario, trials: list[Trial]) -> list[Figure]:
    lags = [t.seen.lag * 1000 for t in trials]
    calls = [t.call * 1000 for t in trials]
    n = f"{scenario.label}, {len(trials)} trials"
    return [
        at_most(
            "kill",
            f"requests started after the 200 ({n})",
            sum(t.seen.started_after for t in trials),
            "req",
            0,
        ),
        reported(
            "kill", "  answer -> last in-flight request done, p50", percentile(lags, 50), "ms"
        ),
        at_most(
            "kill",
            "  answer -> last in-flight request done, p99",
            percentile(lags, 99),
            "ms",
            TARGET_LAG_SECONDS * 1000,
        ),
        reported("kill", "  stop call (first request -> 200), p50", percentile(calls, 50), "ms"),
        reported("kill", "  stop call (first request -> 200), p99", percentile(calls, 99), "ms"),
        reported(
            "kill",
            "  503 'not yet confirmed' answers before the 200",
            sum(t.unconfirmed for t in trials),
            "",
        ),
        reported(
            "kill",
            "  requests sent before the stop, median",
            median(t.seen.started_before for t in trials),
            "req",
        ),
    ]
