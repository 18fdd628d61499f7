"""Opens budget fidelity: a campaign paced by the opens it causes, against an app population.

`wavecast bench opens`. `--devices` 100,000 devices; a campaign in three waves (1 %, hold
60 s; 10 %, hold 30 s; 100 %) with `throttle: {"per_second": 2000, "max_opens_per_second":
300}`, sent by two `wavecast worker` processes through the real provider client
(`--provider`: aioapns by default, firebase-admin with `fcm`) to the provider's fake (its own
process, every request recorded). The app population (`wavecast_tools.simulator`) reads what
the fake received and opens each push with probability `--open-rate` 0.3 after a log-normal
delay of median `--median-delay` 20 s (shape `--sigma` 1), reporting every open to a real
`wavecast api` process (POST /v1/events) once it has happened.

The campaign is run twice, one after the other, on a fresh stack each time:
- **adaptive**: the engine as deployed. Until the campaign has 20 opens of its own it paces
  by the deployment's prior (WAVECAST_OPENS_PRIOR_*: open rate 0.5, median 5 s), then by
  what it estimates from the campaign's events.
- **informed**: the same engine told the truth: its prior is the population's open rate and
  median delay (the prior's shape is log-normal with sigma 1, the population's by default),
  so it paces by the exact kernel from the first send, and its own events agree with it.

Figures:
- **busiest 10 s of opens** (adaptive): the most opens the population made in any 10
  consecutive whole seconds, per second. Target ≤ 1.1 × the budget.
- **duration / informed run's**: the adaptive campaign's duration (first send to last send,
  from the ledger) over the informed one's, both measured here on the same machine, stack
  and population: what not knowing the population costs. Target ≤ 1.25.
- Beside them, the oracle on paper: the same controller (`app.rollout.opens_budget.decide`,
  no headroom) given the exact kernel and run second by second on expected opens with
  sends leaving the instant they are allowed (`oracle_duration`): what an infinitely fast
  machine would take. Each run's duration over it shows what this machine's sending costs.

APNs is the default provider because firebase-admin costs about 1.2 ms of CPU per push here
(`wavecast bench delivery`): on 2 cores shared with the fake, the API taking the opens and
PostgreSQL, an FCM campaign cannot leave at the rates the budget allows, and the figure would
measure the client library rather than the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import httpx
from sqlalchemy import func, select
from sqlmodel import col

from app.auth.models import Scope
from app.campaigns.models import Campaign
from app.control.plane import paced
from app.delivery.models import Delivery
from app.rollout import opens_budget as ob
from app.rollout.planner import cumulative_target
from app.runtime import Runtime
from app.settings import Settings
from wavecast_tools.bench import stack
from wavecast_tools.bench.report import Figure, at_most, reported
from wavecast_tools.simulator import AppPopulation, FakeHttpSource, busiest_window, running

DESCRIPTION = "opens budget fidelity against a simulated app population (PostgreSQL)"
TAG = "opens"
WAVES = ((1, 60), (10, 30), (100, 0))
WINDOW_RATIO = 1.1
DURATION_RATIO = 1.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--provider", choices=("apns", "fcm"), default="apns")
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--per-second", type=int, default=2_000)
    parser.add_argument("--open-rate", type=float, default=0.3)
    parser.add_argument("--median-delay", type=float, default=20.0)
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drain", type=float, default=60.0, help="seconds of opens after")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=1_800,
        help="stop waiting for the campaign after this long and report what it did so far",
    )


def oracle_duration(
    devices: int,
    waves: tuple[tuple[int, int], ...],
    kernel: tuple[float, ...],
    *,
    budget: float,
    per_second: float,
) -> tuple[int, float]:
    """Seconds from the first send to the end of the last, and the most expected opens in
    any second, of the controller that knows ``kernel`` exactly: each second it sends
    ``floor`` of what `decide` allows (no headroom), within the current wave; a wave is
    finished with its last send, and the next one starts once its hold has passed."""
    model = ob.OpensModel(kernel, "events")
    targets = [cumulative_target(Decimal(p), devices) for p, _hold in waves]
    history: list[int] = []
    sent, wave, resume_at, last = 0, 0, 0, 0
    second = 0
    while sent < devices:
        if second >= resume_at:
            ages = list(reversed(history))[: len(kernel) + 1]
            decision = ob.decide(model, ages, budget=budget, per_second=per_second, headroom=1.0)
            n = min(math.floor(decision.per_second), targets[wave] - sent)
        else:
            n = 0
        history.append(n)
        sent += n
        if n:
            last = second
        if sent >= targets[wave] and wave + 1 < len(waves):
            resume_at = second + 1 + waves[wave][1]
            wave += 1
        second += 1
    opens = [
        sum(
            history[s] * kernel[t - s - 1]
            for s in range(len(history))
            if 0 <= t - s - 1 < len(kernel)
        )
        for t in range(len(history) + len(kernel))
    ]
    return last + 1, max(opens)


@dataclass
class Outcome:
    duration: float
    opens: list[float]
    delivered: int
    rejected: int
    reasons: list[str]
    peak_rate: float
    mean_rate: float
    """The mean effective rate over the seconds it was polled while the campaign ran."""
    completed: bool
    sent: int


async def _prepare(settings: Settings, devices: int, platform: str) -> None:
    runtime = await Runtime.start(settings)
    try:
        await stack.empty_stores(runtime)
        await stack.add_devices(runtime, devices, tag=TAG, platform=platform)
    finally:
        await runtime.close()


async def _forget_campaigns(settings: Settings) -> None:
    """Between the two runs: campaigns, ledger, events and Redis go; the devices stay."""
    runtime = await Runtime.start(settings)
    try:
        await stack.empty_stores(runtime, devices=False)
    finally:
        await runtime.close()


async def _duration(runtime: Runtime, campaign_id: uuid.UUID) -> float:
    async with runtime.sessionmaker() as session:
        first, last = (
            await session.execute(
                select(func.min(col(Delivery.sent_at)), func.max(col(Delivery.sent_at))).where(
                    col(Delivery.campaign_id) == campaign_id
                )
            )
        ).one()
    if first is None or last is None:
        raise SystemExit("wavecast bench opens: nothing was sent")
    return float((last - first).total_seconds())


async def _sent(runtime: Runtime, campaign_id: uuid.UUID) -> int:
    async with runtime.sessionmaker() as session:
        sent: int = (
            await session.execute(
                select(func.count()).where(
                    col(Delivery.campaign_id) == campaign_id, col(Delivery.sent_at).is_not(None)
                )
            )
        ).scalar_one()
        return sent


async def _run(
    settings: Settings, args: argparse.Namespace, fake_url: str, api_url: str
) -> Outcome:
    runtime = await Runtime.start(settings)
    try:
        key = await stack.api_key(runtime, [Scope.events_write])
        await stack.workers_alive(runtime.redis, args.workers)
        source = FakeHttpSource(fake_url)
        events = httpx.AsyncClient(
            base_url=api_url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        )
        population = AppPopulation(
            source=source,
            events=events,
            open_rate=args.open_rate,
            median_delay=args.median_delay,
            sigma=args.sigma,
            seed=args.seed,
        )
        reasons: list[str] = []
        rates: list[float] = []
        completed = False
        async with running(population):
            campaign_id = await stack.start_campaign(
                runtime,
                tag=TAG,
                per_second=args.per_second,
                rollout={"waves": [{"percent": p, "hold_seconds": h} for p, h in WAVES]},
                max_opens_per_second=args.budget,
            )
            deadline = time.monotonic() + args.max_seconds
            while True:
                async with runtime.sessionmaker() as session:
                    campaign = await session.get(Campaign, campaign_id)
                    assert campaign is not None
                if campaign.effective_reason and (
                    not reasons or reasons[-1] != campaign.effective_reason
                ):
                    reasons.append(campaign.effective_reason)
                if campaign.effective_per_second is not None:
                    rates.append(campaign.effective_per_second)
                if campaign.status == "completed":
                    completed = True
                    break
                if campaign.status != "running":
                    raise SystemExit(f"wavecast bench opens: campaign {campaign.status}")
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            # The opens of the last sends come after the campaign has completed.
            await asyncio.sleep(args.drain)
        await source.aclose()
        await events.aclose()
        return Outcome(
            duration=await _duration(runtime, campaign_id),
            opens=population.opens,
            delivered=population.delivered,
            rejected=population.rejected,
            reasons=reasons,
            peak_rate=max(rates, default=0.0),
            mean_rate=sum(rates) / len(rates) if rates else 0.0,
            completed=completed,
            sent=await _sent(runtime, campaign_id),
        )
    finally:
        await runtime.close()


def _one_run(settings: Settings, args: argparse.Namespace, name: str, **worker_env: str) -> Outcome:
    work = stack.workdir(f"opens-{name}")
    print(f"opens: {name} run, logs in {work}", flush=True)
    with (
        stack.fake(args.provider, work) as fake,
        stack.api_process(settings, work) as api_url,
        stack.workers(settings, args.workers, work, **fake.env, **worker_env),
    ):
        return asyncio.run(_run(settings, args, fake.url, api_url))


def run_scenario(settings: Settings, args: argparse.Namespace) -> list[Figure]:
    if not settings.effective_database_url.startswith("postgresql"):
        raise SystemExit("wavecast bench opens: set WAVECAST_DATABASE_URL to a PostgreSQL db")
    platform = "ios" if args.provider == "apns" else "android"
    asyncio.run(_prepare(settings, args.devices, platform))
    adaptive = _one_run(settings, args, "adaptive")
    asyncio.run(_forget_campaigns(settings))
    informed = _one_run(
        settings,
        args,
        "informed",
        WAVECAST_OPENS_PRIOR_OPEN_RATE=repr(args.open_rate),
        WAVECAST_OPENS_PRIOR_MEDIAN_DELAY_SECONDS=repr(args.median_delay),
    )
    kernel = ob.lognormal_kernel(args.open_rate, args.median_delay, args.sigma)
    oracle, oracle_peak = oracle_duration(
        args.devices, WAVES, kernel, budget=args.budget, per_second=paced(args.per_second)
    )
    busiest = busiest_window(adaptive.opens, 10)
    for reason in adaptive.reasons[-3:]:
        print(f"effective_reason (adaptive): {reason}")
    for reason in informed.reasons[-2:]:
        print(f"effective_reason (informed): {reason}")
    population = (
        f"p={args.open_rate:g}, median {args.median_delay:g} s, {args.devices:,} devices, "
        f"budget {args.budget}/s, {args.provider}"
    )

    def ended(outcome: Outcome) -> str:
        # Not completed in --max-seconds: its duration so far is a lower bound.
        return "" if outcome.completed else f", NOT completed: {outcome.sent:,} sent"

    figures = [
        at_most(
            "opens",
            f"busiest 10 s of opens, adaptive ({population})",
            busiest,
            "opens/s",
            WINDOW_RATIO * args.budget,
        ),
        reported(
            "opens",
            "busiest 10 s of opens, informed",
            busiest_window(informed.opens, 10),
            "opens/s",
        ),
        at_most(
            "opens",
            f"duration adaptive / informed ({adaptive.duration:.0f} s{ended(adaptive)} / "
            f"{informed.duration:.0f} s{ended(informed)})",
            adaptive.duration / max(informed.duration, 1.0),
            "",
            DURATION_RATIO,
        ),
        reported("opens", "oracle on paper: duration (sends leave when allowed)", oracle, "s"),
        reported(
            "opens", "oracle on paper: busiest second of expected opens", oracle_peak, "opens/s"
        ),
        reported("opens", "duration adaptive / oracle on paper", adaptive.duration / oracle, ""),
        reported("opens", "duration informed / oracle on paper", informed.duration / oracle, ""),
    ]
    for name, outcome in (("adaptive", adaptive), ("informed", informed)):
        figures += [
            reported("opens", f"{name}: highest effective rate set", outcome.peak_rate, "sends/s"),
            reported(
                "opens",
                f"{name}: mean effective rate set (polled each second)",
                outcome.mean_rate,
                "sends/s",
            ),
            reported(
                "opens",
                f"{name}: mean send rate achieved",
                outcome.sent / max(outcome.duration, 1.0),
                "sends/s",
            ),
            reported("opens", f"{name}: pushes the population received", outcome.delivered, ""),
            reported("opens", f"{name}: opens reported", len(outcome.opens), ""),
            at_most("opens", f"{name}: opens the API rejected", outcome.rejected, "", 0),
        ]
    return figures
